"""``ipynbsrv_firewall``: keep users' containers away from the node and the internal network.

The engine's ``"icc": false`` only drops traffic forwarded from one container to another
over the default bridge. It does not stop a container from connecting to the node's own
address and a port another user's container publishes there: the engine's userland proxy
(``docker-proxy``, a process on the node) answers that connection and opens its own to the
target container. Nor does it stop a container from reaching every other node's internal
address through the node's outbound NAT. This command closes both paths with iptables:

- chain ``IPYNBSRV-INPUT``, jumped to from the top of ``INPUT``: no new connection from a
  container bridge to the node itself (any of its addresses, any port: published ports, the
  host API, sshd);
- chain ``IPYNBSRV-FORWARD``, jumped to from the top of the engine's ``DOCKER-USER`` chain
  (which the engine creates and never flushes): no new connection from a container bridge to
  another container bridge, whatever the addresses, nor to the protected networks (by default
  the private, shared and link-local ranges: the internal network, the other nodes, cloud
  metadata services).

Both refuse through ``IPYNBSRV-REFUSE``: a TCP reset (the client fails at once), an ICMP
"administratively prohibited" for other protocols, or nothing with ``--action drop``.

Replies to connections opened from elsewhere (the master reaching a published port, the
node's ``docker-proxy`` or health checks talking to a container, a container's own outbound
connections) are conntrack ``ESTABLISHED,RELATED`` and pass first. Both chains only ever
``RETURN`` (leave the packet to the rules that follow: the engine's, the host's) or refuse:
they never accept anything the host's own firewall would refuse.

The chains are refilled in place without a moment where they are empty; the jumps are
added once. Standard library only: no Django needed. IPv4 only (the engine's default).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "INPUT_CHAIN", "FORWARD_CHAIN", "REFUSE_CHAIN", "DOCKER_USER", "DEFAULT_BRIDGES", "DEFAULT_PROTECTED",
    "Allow", "Policy", "TableState", "FirewallError",
    "parse_allow", "parse_bridge", "parse_network", "parse_state",
    "plan_install", "plan_remove", "problems", "build_parser", "main",
]

INPUT_CHAIN = "IPYNBSRV-INPUT"
FORWARD_CHAIN = "IPYNBSRV-FORWARD"
REFUSE_CHAIN = "IPYNBSRV-REFUSE"  # what a refused connection gets; the other two jump to it
#: every chain of ours, in the order they are made (a chain before those that jump to it)
CHAINS = (REFUSE_CHAIN, INPUT_CHAIN, FORWARD_CHAIN)
DOCKER_USER = "DOCKER-USER"
#: where each of our chains is jumped to from
PARENTS = {INPUT_CHAIN: "INPUT", FORWARD_CHAIN: DOCKER_USER}

DEFAULT_BRIDGES = ("docker0", "br-+")
DEFAULT_PROTECTED = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")

EXIT_OK = 0
EXIT_NOT_IN_PLACE = 1  # --check: the rules are missing or differ
EXIT_USAGE = 2  # bad flags or values (argparse uses 2 as well)
EXIT_ENVIRONMENT = 3  # cannot act here: not root, no iptables, no DOCKER-USER, iptables failed

ESTABLISHED = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
#: the refusal chain's rules per action: a TCP reset fails a connection at once (an ICMP error
#: made Linux clients wait for the SYN's first retransmission, a second), ICMP for the rest
ACTIONS = {
    "reject": ["-p tcp -j REJECT --reject-with tcp-reset", "-j REJECT --reject-with icmp-admin-prohibited"],
    "drop": ["-j DROP"],
}

# an interface name as iptables takes it: at most 15 characters, a trailing + is a wildcard
_BRIDGE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,13}[A-Za-z0-9_.+-]?$")


class FirewallError(Exception):
    """A problem the operator can fix; printed without a traceback, with an exit status."""

    def __init__(self, message: str, status: int = EXIT_ENVIRONMENT) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------
# The policy: what to refuse, as pure data


def parse_network(text: str) -> ipaddress.IPv4Network:
    """An IPv4 network (``10.0.0.0/8``) or address (``10.0.0.53``, taken as /32)."""
    try:
        return ipaddress.IPv4Network(text.strip(), strict=True)
    except ValueError as exc:
        raise FirewallError(f"{text!r} is not an IPv4 network or address ({exc}); "
                            "write it like 10.0.0.0/8 or 10.0.0.53", EXIT_USAGE) from None


def parse_bridge(text: str) -> str:
    """An interface name for ``-i``: ``docker0``, ``br-+`` (every name starting ``br-``)."""
    if not _BRIDGE.match(text) or text == "+":
        raise FirewallError(f"{text!r} is not an interface name: letters, digits, '_', '.', '-', at most 15 "
                            "characters, optionally ending in '+' for 'every interface starting so' (e.g. br-+)",
                            EXIT_USAGE)
    return text


@dataclass(frozen=True)
class Allow:
    """An exception: containers may open connections to ``network``, on ``ports`` only
    (a ``(first, last)`` range) if given, over ``protocols`` (tcp and udp unless one is named)."""

    network: ipaddress.IPv4Network
    ports: tuple[int, int] | None = None
    protocols: tuple[str, ...] = ("tcp", "udp")

    def specs(self) -> list[str]:
        """The rule specifications, as ``iptables -S`` prints them (without ``-A CHAIN``)."""
        if self.ports is None:
            return [f"-d {self.network} -j RETURN"]
        first, last = self.ports
        port = str(first) if first == last else f"{first}:{last}"
        return [f"-d {self.network} -p {proto} -m {proto} --dport {port} -j RETURN" for proto in self.protocols]


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise FirewallError(f"--allow {whole!r}: {text!r} is not a port (1-65535)", EXIT_USAGE)
    return int(text)


def parse_allow(text: str) -> Allow:
    """``CIDR``, ``CIDR:PORT``, ``CIDR:FIRST-LAST``, each optionally ending ``/tcp`` or ``/udp``
    (after a port): ``10.0.0.53:53``, ``10.0.0.0/24:8000-8100/tcp``."""
    address, sep, rest = text.strip().partition(":")
    network = parse_network(address)
    if not sep:
        return Allow(network)
    ports, slash, proto = rest.partition("/")
    if slash and proto not in ("tcp", "udp"):
        raise FirewallError(f"--allow {text!r}: the protocol must be tcp or udp, not {proto!r}", EXIT_USAGE)
    first, dash, last = ports.partition("-")
    low = _port(first, text)
    high = _port(last, text) if dash else low
    if high < low:
        raise FirewallError(f"--allow {text!r}: the port range {low}-{high} is backwards", EXIT_USAGE)
    return Allow(network, (low, high), (proto,) if slash else ("tcp", "udp"))


def _unique(items):
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class Policy:
    """Which bridges hold users' containers, which networks they must not reach, the
    exceptions, and what happens to a refused connection."""

    bridges: tuple[str, ...] = DEFAULT_BRIDGES
    protected: tuple[ipaddress.IPv4Network, ...] = field(
        default_factory=lambda: tuple(ipaddress.IPv4Network(n) for n in DEFAULT_PROTECTED))
    allows: tuple[Allow, ...] = ()
    action: str = "reject"

    def __post_init__(self) -> None:
        if not self.bridges:
            raise FirewallError("at least one bridge is needed", EXIT_USAGE)
        if self.action not in ACTIONS:
            raise FirewallError(f"the action must be one of {', '.join(ACTIONS)}", EXIT_USAGE)
        object.__setattr__(self, "bridges", _unique(self.bridges))
        object.__setattr__(self, "protected", _unique(self.protected))
        object.__setattr__(self, "allows", _unique(self.allows))

    def rules(self) -> dict[str, list[str]]:
        """Each chain's rules, in order, exactly as ``iptables -S`` prints them; the chains in
        the order they must be made."""
        target = REFUSE_CHAIN
        allows = [spec for allow in self.allows for spec in allow.specs()]
        inbound = [ESTABLISHED, *allows, *(f"-i {bridge} -j {target}" for bridge in self.bridges)]
        forward = [
            ESTABLISHED,
            *allows,
            # container to container on this node, whatever their addresses
            *(f"-i {src} -o {dst} -j {target}" for src in self.bridges for dst in self.bridges),
            # container to the internal network, the other nodes, metadata services
            *(f"-d {net} -i {bridge} -j {target}" for bridge in self.bridges for net in self.protected),
        ]
        return {
            REFUSE_CHAIN: [f"-A {REFUSE_CHAIN} {spec}" for spec in ACTIONS[self.action]],
            INPUT_CHAIN: [f"-A {INPUT_CHAIN} {spec}" for spec in inbound],
            FORWARD_CHAIN: [f"-A {FORWARD_CHAIN} {spec}" for spec in forward],
        }


# ---------------------------------------------------------------------------------------------
# What the filter table holds now


@dataclass
class TableState:
    """The filter table as ``iptables -S`` prints it: the chains and each chain's rules."""

    chains: set[str] = field(default_factory=set)
    rules: dict[str, list[str]] = field(default_factory=dict)

    def chain(self, name: str) -> list[str]:
        return self.rules.get(name, [])


def parse_state(text: str) -> TableState:
    state = TableState()
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2:
            continue
        if words[0] in ("-P", "-N"):
            state.chains.add(words[1])
            state.rules.setdefault(words[1], [])
        elif words[0] == "-A":
            state.rules.setdefault(words[1], []).append(" ".join(words))
    return state


#: an engine's filter table as a dry run without root assumes it (nothing of ours yet)
FRESH_ENGINE = TableState({"INPUT", "FORWARD", "OUTPUT", DOCKER_USER},
                          {"INPUT": [], "FORWARD": [f"-A FORWARD -j {DOCKER_USER}"], "OUTPUT": [],
                           DOCKER_USER: [f"-A {DOCKER_USER} -j RETURN"]})


def _jump(chain: str) -> str:
    return f"-A {PARENTS[chain]} -j {chain}"


def _positions(rules: list[str], rule: str) -> list[int]:
    return [i for i, text in enumerate(rules, start=1) if text == rule]


NO_DOCKER_USER = (
    f"the {DOCKER_USER} chain is missing: the Docker engine is not running, or runs with "
    '"iptables": false. Start the engine with "iptables": true (the default) in '
    "/etc/docker/daemon.json, then run this command again (after the engine: see the systemd "
    "unit in docs/commands.md)")


def plan_install(policy: Policy, state: TableState) -> list[list[str]]:
    """The iptables arguments that turn ``state`` into the policy's rules, in order.

    An existing chain is refilled by inserting the new rules on top and then deleting the old
    ones below them, so it is never empty in between. Nothing is planned when all is in place.
    """
    if DOCKER_USER not in state.chains:
        raise FirewallError(NO_DOCKER_USER)
    commands: list[list[str]] = []
    for chain, wanted in policy.rules().items():
        current = state.chain(chain)
        if chain not in state.chains:
            commands.append(["-N", chain])
            commands += [shlex.split(rule) for rule in wanted]
        elif current != wanted:
            for position, rule in enumerate(wanted, start=1):
                commands.append(["-I", chain, str(position), *shlex.split(rule)[2:]])
            commands += [["-D", chain, str(len(wanted) + 1)] for _ in current]
    for chain, parent in PARENTS.items():
        found = _positions(state.chain(parent), _jump(chain))
        if found != [1]:
            # missing, misplaced or repeated: take every copy out, then one at the top
            commands += [["-D", parent, "-j", chain] for _ in found]
            commands.append(["-I", parent, "1", "-j", chain])
    return commands


def plan_remove(state: TableState) -> list[list[str]]:
    """The iptables arguments that take every trace of this command out of ``state``."""
    commands: list[list[str]] = []
    for chain, parent in PARENTS.items():
        commands += [["-D", parent, "-j", chain] for _ in _positions(state.chain(parent), _jump(chain))]
    # flush them all before deleting any: the refusal chain is deleted once nothing jumps to it
    present = [chain for chain in reversed(CHAINS) if chain in state.chains]
    commands += [["-F", chain] for chain in present]
    commands += [["-X", chain] for chain in present]
    return commands


def problems(policy: Policy, state: TableState) -> list[str]:
    """Why ``state`` does not enforce ``policy``; empty when it does."""
    found: list[str] = []
    if DOCKER_USER not in state.chains:
        found.append(NO_DOCKER_USER)
    for chain, wanted in policy.rules().items():
        if chain not in state.chains:
            found.append(f"the chain {chain} is missing")
        elif state.chain(chain) != wanted:
            found.append(f"the chain {chain} holds {len(state.chain(chain))} rule(s) that differ from the "
                         f"{len(wanted)} asked for (other options, or changed by hand)")
        parent = PARENTS.get(chain)
        if parent is None or parent not in state.chains:
            continue
        positions = _positions(state.chain(parent), _jump(chain))
        if not positions:
            found.append(f"{parent} does not jump to {chain}")
        elif positions != [1]:
            found.append(f"the jump from {parent} to {chain} is not the one first rule of {parent} "
                         f"(found at position(s) {', '.join(map(str, positions))})")
    return found


def nameserver_warnings(policy: Policy, paths: Sequence[str] = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")) -> list[str]:
    """Name servers containers would use that the policy refuses (they then cannot resolve names)."""
    warnings = []
    seen = set()
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split()
            if len(words) < 2 or words[0] != "nameserver" or words[1] in seen:
                continue
            seen.add(words[1])
            try:
                address = ipaddress.IPv4Address(words[1])
            except ValueError:
                continue
            if address.is_loopback:
                continue  # the engine gives containers other servers then
            protected = any(address in net for net in policy.protected)
            allowed = any(address in allow.network and (allow.ports is None or allow.ports[0] <= 53 <= allow.ports[1])
                          for allow in policy.allows)
            if protected and not allowed:
                warnings.append(f"the name server {address} (in {path}) is in a protected network: containers "
                                f"that use it cannot resolve names; add --allow {address}:53 if they should")
    return warnings


# ---------------------------------------------------------------------------------------------
# Running iptables


def _iptables(binary: str, args: Sequence[str]) -> str:
    try:
        done = subprocess.run([binary, "-w", *args], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise FirewallError(f"{binary} -w {shlex.join(args)} did not finish in 60 s (the xtables lock held?)") from None
    if done.returncode != 0:
        raise FirewallError(f"{binary} -w {shlex.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _require_iptables() -> str:
    binary = shutil.which("iptables")
    if binary is None:
        raise FirewallError("iptables is not installed (or not on PATH): install it (Debian: apt-get install iptables); "
                            "use the same iptables the Docker engine uses")
    return binary


def _require_root() -> None:
    if os.geteuid() != 0:
        raise FirewallError("changing or reading the firewall needs root: run this command as root (sudo)")


def read_state(binary: str) -> TableState:
    return parse_state(_iptables(binary, ["-S"]))


def _print_commands(binary: str, commands: list[list[str]]) -> None:
    for args in commands:
        print(shlex.join([binary, "-w", *args]))


# ---------------------------------------------------------------------------------------------
# The command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipynbsrv_firewall",
        description="Install iptables rules on a node so that users' containers cannot open connections to the node "
        "itself (its published ports, its host API) nor to other containers, other nodes or the internal network. "
        "Replies and the containers' own connections to other destinations still work. Run as root, after the "
        "Docker engine started; running it again is harmless.",
        epilog="Exit status: 0 done (or, with --check, the rules are in place); 1 --check: the rules are missing "
        "or differ; 2 a usage error; 3 cannot act here (not root, no iptables, no DOCKER-USER chain, iptables failed).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--remove", action="store_true", help="take every rule, chain and jump of this command out again")
    mode.add_argument("--check", action="store_true",
                      help="change nothing; exit 0 if the rules for these options are in place, 1 if not (and say why)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the iptables commands instead of running them (as root: against the current rules; "
                        "otherwise as if none of ours were there yet)")
    parser.add_argument("--bridge", action="append", metavar="NAME", type=_arg(parse_bridge),
                        help="an interface users' containers are attached to; repeat for more; a trailing + matches every "
                        f"name starting so (default: {' and '.join(DEFAULT_BRIDGES)}). Given, it replaces the default")
    parser.add_argument("--protect", action="append", metavar="CIDR", type=_arg(parse_network),
                        help="a network containers must not reach; repeat for more (default: "
                        f"{', '.join(DEFAULT_PROTECTED)}). Given, it replaces the default list: repeat the defaults "
                        "you keep")
    parser.add_argument("--allow", action="append", metavar="CIDR[:PORT[-PORT]][/tcp|/udp]", type=_arg(parse_allow),
                        default=[],
                        help="an exception containers may still reach, e.g. an internal name server: 10.0.0.53:53 "
                        "(tcp and udp unless one is named); repeat for more")
    parser.add_argument("--action", choices=sorted(ACTIONS), default="reject",
                        help="what happens to a refused connection: reject (the default: a TCP reset, or an ICMP "
                        "'administratively prohibited' for other protocols, so the client fails at once) or drop (it "
                        "waits for its timeout)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each iptables command as it runs")
    return parser


def _arg(parse):
    def convert(text: str):
        try:
            return parse(text)
        except FirewallError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


def policy_from(options: argparse.Namespace) -> Policy:
    kwargs: dict = {"allows": tuple(options.allow), "action": options.action}
    if options.bridge:
        kwargs["bridges"] = tuple(options.bridge)
    if options.protect:
        kwargs["protected"] = tuple(options.protect)
    return Policy(**kwargs)


def run(options: argparse.Namespace) -> int:
    policy = policy_from(options)
    if options.dry_run:
        binary = shutil.which("iptables") or "iptables"
        state = FRESH_ENGINE
        if os.geteuid() == 0 and shutil.which("iptables"):
            state = read_state(binary)
        else:
            print("# not root or no iptables here: the commands for a node without any of these rules yet", file=sys.stderr)
        commands = plan_remove(state) if options.remove else plan_install(policy, state)
        _print_commands("iptables", commands)
        if not commands:
            print("# nothing to do: " + ("nothing of ours is installed" if options.remove else "the rules are in place"),
                  file=sys.stderr)
        return EXIT_OK

    _require_root()
    binary = _require_iptables()
    state = read_state(binary)
    if options.check:
        found = problems(policy, state)
        if found:
            for problem in found:
                print(f"not in place: {problem}", file=sys.stderr)
            return EXIT_NOT_IN_PLACE
        print(f"in place: {INPUT_CHAIN} ({len(state.chain(INPUT_CHAIN))} rules) first in INPUT, "
              f"{FORWARD_CHAIN} ({len(state.chain(FORWARD_CHAIN))} rules) first in {DOCKER_USER}")
        return EXIT_OK

    commands = plan_remove(state) if options.remove else plan_install(policy, state)
    for args in commands:
        if options.verbose:
            _print_commands("iptables", [args])
        _iptables(binary, args)
    after = read_state(binary)
    if options.remove:
        left = [chain for chain in CHAINS if chain in after.chains]
        if left:
            raise FirewallError(f"still there after removal: {', '.join(left)}")
        print("removed" if commands else "nothing to remove: none of these rules were installed")
        return EXIT_OK
    left = problems(policy, after)
    if left:
        raise FirewallError("the rules read back differ from those installed: " + "; ".join(left))
    for warning in nameserver_warnings(policy):
        print(f"warning: {warning}", file=sys.stderr)
    verb = "installed" if commands else "already in place, nothing changed"
    print(f"{verb}: {INPUT_CHAIN} ({len(after.chain(INPUT_CHAIN))} rules) first in INPUT, "
          f"{FORWARD_CHAIN} ({len(after.chain(FORWARD_CHAIN))} rules) first in {DOCKER_USER}; "
          f"bridges {', '.join(policy.bridges)}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.check and options.dry_run:
        parser.error("--check changes nothing already: --dry-run goes with an install or --remove")
    try:
        return run(options)
    except FirewallError as exc:
        print(f"ipynbsrv_firewall: {exc}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    sys.exit(main())
