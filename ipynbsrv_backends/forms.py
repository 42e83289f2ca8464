"""The admin's forms: backend and node configuration (validated by the backend class, secrets
masked), and the small forms behind "add container", "clone" and "commit to image".

Configuration is validated by :func:`ipynbsrv_backends.registry.validate_backend_config`
(through the models' ``clean``), the one validator the API and the checks use too. A secret
is never sent to the browser: the form shows :data:`~ipynbsrv_backends.registry.MASK` in its
place, and a mask sent back unchanged keeps the stored value.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from . import errors
from .models import Backend, Image, Node, name_validator
from .registry import MASK, allowed_backends, backend_choices, backend_class, mask_config, unmask_config, validate_backend_config
from .validation import NAME_MAX

__all__ = ["BackendForm", "NodeForm", "ContainerCreateForm", "ContainerCloneForm", "ContainerCommitForm"]


def options_help(kinds: list[str]) -> list[str]:
    """One line per backend class naming its constructor options (from the class's own
    declaration, ``OPTION_TABLE``), secrets marked as such; never a value."""
    lines = []
    for kind in kinds:
        try:
            table = getattr(backend_class(kind), "OPTION_TABLE", None)
        except errors.BackendError:
            continue
        if table is not None:
            lines.append(table.help_text())
    return lines


def _unmasked(kind: str, value: Any, stored: dict[str, Any] | None) -> dict[str, Any]:
    """The submitted configuration with masks replaced by the stored secrets."""
    if value in (None, ""):
        value = {}
    if not isinstance(value, dict):
        raise ValidationError(_("The configuration must be a JSON object, such as {\"timeout\": 30}."))
    value = unmask_config(kind, value, stored)
    left = sorted(key for key, item in value.items() if item == MASK)
    if left:
        raise ValidationError(
            _("No secret is stored for %(keys)s: type the value instead of the mask."),
            params={"keys": ", ".join(left)},
        )
    return value


class BackendForm(forms.ModelForm):
    """A backend: its class from the allow-list and its configuration."""

    kind = forms.ChoiceField(
        label=_("Backend class"), choices=backend_choices,
        help_text=_("One of the classes allowed in IPYNBSRV_BACKENDS['BACKEND_CLASSES']."),
    )

    class Meta:
        model = Backend
        fields = ["name", "kind", "config"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["config"] = mask_config(self.instance.kind, self.instance.config)
        intro = _(
            "Constructor arguments as a JSON object. Secrets (tokens, passwords, keys) are shown as "
            "%(mask)s; leave the mask to keep the stored value."
        ) % {"mask": MASK}
        try:
            kinds = [self.instance.kind] if self.instance.pk else sorted(allowed_backends())
        except errors.BackendError:
            kinds = []
        # The admin shows help text as HTML: every piece is escaped here.
        self.fields["config"].help_text = format_html(
            "{}{}", intro, format_html_join("", "<br>{}", ((line,) for line in options_help(kinds))))

    def clean_config(self) -> dict[str, Any]:
        kind = self.cleaned_data.get("kind") or self.instance.kind
        return _unmasked(kind, self.cleaned_data.get("config"), self.instance.config if self.instance.pk else None)

    def clean(self) -> dict[str, Any]:
        """The backend's own configuration is validated by ``Backend.clean``; here each node
        that uses it is checked with its overrides, so a change cannot break a node."""
        super().clean()
        cleaned = self.cleaned_data
        kind, config = cleaned.get("kind"), cleaned.get("config")
        if not self.instance.pk or kind is None or config is None:
            return cleaned
        try:
            validate_backend_config(kind, config)
        except ValidationError:
            return cleaned  # reported once, on the field, by Backend.clean
        draft = Backend(pk=self.instance.pk, name=self.instance.name, kind=kind, config=config)
        for node in self.instance.nodes.all():
            node.backend = draft
            try:
                validate_backend_config(kind, node.effective_config())
            except ValidationError as exc:
                # Not on the field: the field's value must reach Backend.clean, or it would
                # validate the stored configuration instead and report a second error.
                self.add_error(None, ValidationError(
                    _("With this configuration the node %(node)s would be invalid: %(reason)s"),
                    params={"node": node.name, "reason": " ".join(exc.messages)},
                ))
        return cleaned


class NodeForm(forms.ModelForm):
    """A node: its backend, address, overrides (masked) and placement flags."""

    class Meta:
        model = Node
        fields = ["name", "address", "backend", "backend_config", "enabled", "draining", "capacity"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.backend_id:
            self.initial["backend_config"] = mask_config(self.instance.backend.kind, self.instance.backend_config)

    def clean_backend_config(self) -> dict[str, Any]:
        backend = self.cleaned_data.get("backend")
        kind = backend.kind if backend is not None else ""
        stored = self.instance.backend_config if self.instance.pk else None
        # Node.clean then validates the effective configuration (backend + overrides).
        return _unmasked(kind, self.cleaned_data.get("backend_config"), stored)


def _users() -> Any:
    User = get_user_model()
    return User.objects.filter(is_active=True).order_by(User.USERNAME_FIELD)


def _allow_draining() -> forms.BooleanField:
    """The override every placing form offers (a fresh field per form class)."""
    return forms.BooleanField(
        label=_("Place it on a draining node anyway"), required=False,
        help_text=_("A draining node takes no new containers; tick this to override that for this one "
                    "(the audit log records it). A disabled node is never used."),
    )


class ContainerCreateForm(forms.Form):
    """What the admin's "add container" asks; ``services.create_container`` does the rest."""

    owner = forms.ModelChoiceField(label=_("Owner"), queryset=_users())
    name = forms.CharField(
        label=_("Name"), max_length=NAME_MAX, validators=[name_validator],
        help_text=_("Unique among the owner's containers, e.g. \"thesis\"."),
    )
    image = forms.ModelChoiceField(label=_("Image"), queryset=Image.objects.all())
    node = forms.ModelChoiceField(
        label=_("Node"), queryset=Node.objects.all(), required=False,
        help_text=_("Leave empty to let placement choose among the healthy, enabled nodes."),
    )
    options = forms.JSONField(
        label=_("Options"), required=False, initial=dict, widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Optional, e.g. {\"mem_limit\": \"2g\", \"cpu_limit\": 1}."),
    )
    allow_draining = _allow_draining()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["owner"]).queryset = _users()  # evaluated per form, not at import

    def clean_options(self) -> dict[str, Any]:
        value = self.cleaned_data.get("options")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise ValidationError(_("The options must be a JSON object."))
        return value


class ContainerCloneForm(forms.Form):
    """A new container from the current filesystem of another."""

    owner = forms.ModelChoiceField(label=_("Owner"), queryset=_users())
    name = forms.CharField(label=_("Name"), max_length=NAME_MAX, validators=[name_validator])
    node = forms.ModelChoiceField(
        label=_("Node"), queryset=Node.objects.all(), required=False,
        help_text=_("Leave empty to clone on the source's node. Another node needs a registry both nodes use."),
    )
    allow_draining = _allow_draining()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["owner"]).queryset = _users()


class ContainerMoveForm(forms.Form):
    """Move a container to another node."""

    node = forms.ModelChoiceField(
        label=_("Target node"), queryset=Node.objects.filter(enabled=True), required=False,
        help_text=_("Leave empty to let placement pick (never a draining node). Both nodes need the same "
                    "registry; the container's snapshots go with it, but a container with named volumes cannot move."),
    )
    allow_draining = _allow_draining()


class ContainerCommitForm(forms.Form):
    """Commit a container's filesystem to an image."""

    name = forms.CharField(
        label=_("Image name"), max_length=NAME_MAX, validators=[name_validator],
        help_text=_("The image is recorded as <owner>/<name>."),
    )
    public = forms.BooleanField(label=_("Public"), required=False,
                                help_text=_("Everyone may start containers from it."))
    description = forms.CharField(label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 3}))
