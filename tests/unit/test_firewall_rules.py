"""``ipynbsrv_firewall``'s rule generation and planning, as pure logic (no iptables run here).

What the rules do on real nodes is in ``tests/cluster/test_firewall_cluster.py``."""

from __future__ import annotations

import ipaddress

import pytest

from ipynbsrv_backends import firewall
from ipynbsrv_backends.firewall import (
    DOCKER_USER,
    FORWARD_CHAIN,
    FRESH_ENGINE,
    INPUT_CHAIN,
    REFUSE_CHAIN,
    Allow,
    FirewallError,
    Policy,
    TableState,
    parse_allow,
    parse_bridge,
    parse_network,
    parse_state,
    plan_install,
    plan_remove,
    problems,
)

REJECT = "-j IPYNBSRV-REFUSE"


def apply(state: TableState, commands: list[list[str]]) -> TableState:
    """A small model of iptables' filter table, enough to replay a plan (-N -X -F -A -I -D)."""
    rules = {chain: list(lines) for chain, lines in state.rules.items()}
    chains = set(state.chains)
    for args in commands:
        op, chain, rest = args[0], args[1], args[2:]
        if op == "-N":
            assert chain not in chains, f"{chain} exists already"
            chains.add(chain)
            rules[chain] = []
        elif op == "-X":
            assert not rules[chain], f"{chain} is not empty"
            referenced = [line for lines in rules.values() for line in lines if line.endswith(f"-j {chain}")]
            assert not referenced, f"{chain} is still referenced"
            chains.remove(chain)
            del rules[chain]
        elif op == "-F":
            rules[chain] = []
        elif op == "-A":
            assert chain in chains
            rules[chain].append(" ".join(["-A", chain, *rest]))
        elif op == "-I":
            rules[chain].insert(int(rest[0]) - 1, " ".join(["-A", chain, *rest[1:]]))
        elif op == "-D" and len(rest) == 1 and rest[0].isdigit():
            del rules[chain][int(rest[0]) - 1]
        elif op == "-D":
            rules[chain].remove(" ".join(["-A", chain, *rest]))  # the first match, as iptables does
        else:
            raise AssertionError(f"unexpected command {args}")
    return TableState(chains, rules)


def test_the_default_policy():
    rules = Policy().rules()
    assert list(rules) == [REFUSE_CHAIN, INPUT_CHAIN, FORWARD_CHAIN]  # made before the chains that jump to it
    # TCP gets a reset (the client fails at once), anything else an ICMP "prohibited"
    assert rules[REFUSE_CHAIN] == [f"-A {REFUSE_CHAIN} -p tcp -j REJECT --reject-with tcp-reset",
                                   f"-A {REFUSE_CHAIN} -j REJECT --reject-with icmp-admin-prohibited"]
    assert rules[INPUT_CHAIN] == [
        f"-A {INPUT_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {INPUT_CHAIN} -i docker0 {REJECT}",
        f"-A {INPUT_CHAIN} -i br-+ {REJECT}",
    ]
    forward = rules[FORWARD_CHAIN]
    # replies first: published ports and the containers' own connections keep working
    assert forward[0] == f"-A {FORWARD_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    # every pair of bridges: no container reaches another, whatever its address
    assert forward[1:5] == [f"-A {FORWARD_CHAIN} -i {a} -o {b} {REJECT}"
                            for a, b in [("docker0", "docker0"), ("docker0", "br-+"), ("br-+", "docker0"), ("br-+", "br-+")]]
    protected = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]
    assert forward[5:] == [f"-A {FORWARD_CHAIN} -d {net} -i {bridge} {REJECT}"
                           for bridge in ("docker0", "br-+") for net in protected]
    # the chains never accept anything: they return to the engine's and host's rules or refuse
    assert not [line for lines in rules.values() for line in lines if "ACCEPT" in line]


def test_allows_come_after_the_replies_and_before_every_refusal():
    policy = Policy(bridges=("docker0",), protected=(ipaddress.IPv4Network("10.0.0.0/8"),),
                    allows=(parse_allow("10.0.0.53:53"), parse_allow("10.1.0.0/16")), action="drop")
    forward = policy.rules()[FORWARD_CHAIN]
    assert forward == [
        f"-A {FORWARD_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {FORWARD_CHAIN} -d 10.0.0.53/32 -p tcp -m tcp --dport 53 -j RETURN",
        f"-A {FORWARD_CHAIN} -d 10.0.0.53/32 -p udp -m udp --dport 53 -j RETURN",
        f"-A {FORWARD_CHAIN} -d 10.1.0.0/16 -j RETURN",
        f"-A {FORWARD_CHAIN} -i docker0 -o docker0 {REJECT}",
        f"-A {FORWARD_CHAIN} -d 10.0.0.0/8 -i docker0 {REJECT}",
    ]
    assert policy.rules()[REFUSE_CHAIN] == [f"-A {REFUSE_CHAIN} -j DROP"]
    # an allowed service on the node itself (a resolver on the bridge's address) too
    assert policy.rules()[INPUT_CHAIN][1:4] == [line.replace(FORWARD_CHAIN, INPUT_CHAIN) for line in forward[1:4]]


def test_duplicates_are_dropped():
    policy = Policy(bridges=("docker0", "docker0"), allows=(parse_allow("10.0.0.1"), parse_allow("10.0.0.1/32")))
    assert policy.bridges == ("docker0",)
    assert len(policy.allows) == 1


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.53", Allow(ipaddress.IPv4Network("10.0.0.53/32"))),
    ("10.0.0.0/24", Allow(ipaddress.IPv4Network("10.0.0.0/24"))),
    ("10.0.0.53:53", Allow(ipaddress.IPv4Network("10.0.0.53/32"), (53, 53), ("tcp", "udp"))),
    ("10.0.0.53:53/udp", Allow(ipaddress.IPv4Network("10.0.0.53/32"), (53, 53), ("udp",))),
    ("10.0.0.0/24:8000-8100/tcp", Allow(ipaddress.IPv4Network("10.0.0.0/24"), (8000, 8100), ("tcp",))),
])
def test_parse_allow(text, expected):
    assert parse_allow(text) == expected


def test_a_port_range_in_the_rules():
    assert parse_allow("10.0.0.0/24:8000-8100/tcp").specs() == ["-d 10.0.0.0/24 -p tcp -m tcp --dport 8000:8100 -j RETURN"]


@pytest.mark.parametrize("text, says", [
    ("10.0.0.1/8", "host bits"),
    ("nonsense", "not an IPv4"),
    ("fd00::1", "not an IPv4"),
    ("10.0.0.1:0", "not a port"),
    ("10.0.0.1:70000", "not a port"),
    ("10.0.0.1:http", "not a port"),
    ("10.0.0.1:53/icmp", "tcp or udp"),
    ("10.0.0.1:90-80", "backwards"),
    ("10.0.0.1:", "not a port"),
])
def test_bad_allows_say_what_is_wrong(text, says):
    with pytest.raises(FirewallError) as info:
        parse_allow(text)
    assert says in str(info.value)
    assert info.value.status == firewall.EXIT_USAGE


@pytest.mark.parametrize("name", ["docker0", "br-+", "br-0123456789ab", "ipynb_users", "veth.12"])
def test_good_bridge_names(name):
    assert parse_bridge(name) == name


@pytest.mark.parametrize("name", ["", "+", "-i", "!docker0", "a" * 16, "docker 0", "docker0;reboot", "br+-", "$(id)"])
def test_bad_bridge_names(name):
    with pytest.raises(FirewallError) as info:
        parse_bridge(name)
    assert info.value.status == firewall.EXIT_USAGE


def test_parse_network_takes_an_address_as_a_host():
    assert parse_network("192.0.2.7") == ipaddress.IPv4Network("192.0.2.7/32")


def test_parse_state():
    state = parse_state("-P INPUT ACCEPT\n-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n-A  INPUT  -i lo -j ACCEPT\n")
    assert state.chains == {"INPUT", "DOCKER-USER"}
    assert state.chain("DOCKER-USER") == ["-A DOCKER-USER -j RETURN"]
    assert state.chain("INPUT") == ["-A INPUT -i lo -j ACCEPT"]
    assert state.chain("FORWARD") == []


def test_install_on_a_fresh_engine_then_nothing_more():
    policy = Policy()
    plan = plan_install(policy, FRESH_ENGINE)
    # the chains are filled before the jumps make them live
    jumps = [i for i, args in enumerate(plan) if args[0] == "-I" and args[1] in ("INPUT", DOCKER_USER)]
    assert jumps == [len(plan) - 2, len(plan) - 1]
    after = apply(FRESH_ENGINE, plan)
    assert problems(policy, after) == []
    assert after.chain("INPUT")[0] == f"-A INPUT -j {INPUT_CHAIN}"
    assert after.chain(DOCKER_USER) == [f"-A {DOCKER_USER} -j {FORWARD_CHAIN}", f"-A {DOCKER_USER} -j RETURN"]
    assert plan_install(policy, after) == []  # idempotent: a second run changes nothing


def test_other_options_refill_the_chains_in_place_never_empty():
    old = Policy()
    installed = apply(FRESH_ENGINE, plan_install(old, FRESH_ENGINE))
    new = Policy(allows=(parse_allow("10.0.0.53:53"),))
    plan = plan_install(new, installed)
    assert ["-F", INPUT_CHAIN] not in plan and ["-F", FORWARD_CHAIN] not in plan
    # replay one command at a time: the chains always hold every refusal of the old or the new policy
    state = installed
    for args in plan:
        state = apply(state, [args])
        for chain in (INPUT_CHAIN, FORWARD_CHAIN):
            refusals = {line for line in state.chain(chain) if REJECT in line}
            assert refusals >= {line for line in old.rules()[chain] if REJECT in line} or \
                refusals >= {line for line in new.rules()[chain] if REJECT in line}, args
    assert problems(new, state) == []
    assert problems(old, state)  # --check with the old options tells the difference
    assert state.chain("INPUT").count(f"-A INPUT -j {INPUT_CHAIN}") == 1


def test_a_misplaced_or_repeated_jump_ends_up_once_at_the_top():
    policy = Policy()
    installed = apply(FRESH_ENGINE, plan_install(policy, FRESH_ENGINE))
    installed.rules["INPUT"] = ["-A INPUT -i lo -j ACCEPT", f"-A INPUT -j {INPUT_CHAIN}", f"-A INPUT -j {INPUT_CHAIN}"]
    assert any("not the one first rule" in p for p in problems(policy, installed))
    after = apply(installed, plan_install(policy, installed))
    assert after.chain("INPUT") == [f"-A INPUT -j {INPUT_CHAIN}", "-A INPUT -i lo -j ACCEPT"]
    assert problems(policy, after) == []


def test_changing_the_action_refills_the_refusal_chain():
    installed = apply(FRESH_ENGINE, plan_install(Policy(), FRESH_ENGINE))
    after = apply(installed, plan_install(Policy(action="drop"), installed))
    assert after.chain(REFUSE_CHAIN) == [f"-A {REFUSE_CHAIN} -j DROP"]
    assert problems(Policy(action="drop"), after) == []


def test_remove_takes_everything_out_and_leaves_the_rest():
    installed = apply(FRESH_ENGINE, plan_install(Policy(), FRESH_ENGINE))
    installed.rules["INPUT"].append("-A INPUT -i lo -j ACCEPT")
    after = apply(installed, plan_remove(installed))
    assert after.chains == FRESH_ENGINE.chains
    assert after.chain("INPUT") == ["-A INPUT -i lo -j ACCEPT"]
    assert after.chain(DOCKER_USER) == [f"-A {DOCKER_USER} -j RETURN"]
    assert plan_remove(after) == []


def test_no_docker_user_chain_is_a_clear_error():
    engine_without_iptables = TableState({"INPUT", "FORWARD", "OUTPUT"}, {})
    with pytest.raises(FirewallError) as info:
        plan_install(Policy(), engine_without_iptables)
    assert '"iptables": true' in str(info.value) and info.value.status == firewall.EXIT_ENVIRONMENT
    assert any("DOCKER-USER chain is missing" in p for p in problems(Policy(), engine_without_iptables))
    assert plan_remove(engine_without_iptables) == []


def test_a_chain_changed_by_hand_is_reported():
    policy = Policy()
    installed = apply(FRESH_ENGINE, plan_install(policy, FRESH_ENGINE))
    del installed.rules[FORWARD_CHAIN][3]
    assert [p for p in problems(policy, installed) if FORWARD_CHAIN in p and "differ" in p]
    assert problems(policy, apply(installed, plan_install(policy, installed))) == []


def test_name_servers_in_protected_networks_are_warned_about(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver 9.9.9.9\nnameserver fd00::1\n")
    warnings = firewall.nameserver_warnings(Policy(), [str(resolv)])
    assert len(warnings) == 1 and "--allow 10.0.0.2:53" in warnings[0]
    assert firewall.nameserver_warnings(Policy(allows=(parse_allow("10.0.0.2:53/udp"),)), [str(resolv)]) == []
    assert firewall.nameserver_warnings(Policy(), [str(tmp_path / "missing")]) == []


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        firewall.main(["--allow", "10.0.0.1/8"])
    assert info.value.code == 2
    assert "host bits" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        firewall.main(["--check", "--remove"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        firewall.main(["--check", "--dry-run"])
    assert info.value.code == 2


def test_dry_run_without_root_prints_the_commands_for_a_fresh_node(monkeypatch, capsys):
    monkeypatch.setattr(firewall.os, "geteuid", lambda: 1000)
    assert firewall.main(["--dry-run", "--bridge", "docker0", "--protect", "10.0.0.0/8"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"iptables -w -N {REFUSE_CHAIN}",
        f"iptables -w -A {REFUSE_CHAIN} -p tcp -j REJECT --reject-with tcp-reset",
        f"iptables -w -A {REFUSE_CHAIN} -j REJECT --reject-with icmp-admin-prohibited",
        f"iptables -w -N {INPUT_CHAIN}",
        f"iptables -w -A {INPUT_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"iptables -w -A {INPUT_CHAIN} -i docker0 {REJECT}",
        f"iptables -w -N {FORWARD_CHAIN}",
        f"iptables -w -A {FORWARD_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"iptables -w -A {FORWARD_CHAIN} -i docker0 -o docker0 {REJECT}",
        f"iptables -w -A {FORWARD_CHAIN} -d 10.0.0.0/8 -i docker0 {REJECT}",
        f"iptables -w -I INPUT 1 -j {INPUT_CHAIN}",
        f"iptables -w -I DOCKER-USER 1 -j {FORWARD_CHAIN}",
    ]
    assert "not root" in err


def test_not_root_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(firewall.os, "geteuid", lambda: 1000)
    assert firewall.main(["--check"]) == firewall.EXIT_ENVIRONMENT
    assert "needs root" in capsys.readouterr().err


def test_the_console_script_is_declared():
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "ipynbsrv_firewall"]
    assert script.value == "ipynbsrv_backends.firewall:main"
    assert script.load() is firewall.main
