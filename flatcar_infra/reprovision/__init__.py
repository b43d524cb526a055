"""In-place reprovisioning of Flatcar machines: read facts over SSH, plan phases purely, act.

``policy`` (shared with the Pulumi components), ``facts`` (read-only host state), ``plan``
(pure decisions), ``procedure`` (the phases over ``flatcar_infra.ssh``), ``messages`` (what the
user reads when something is refused or fails).
"""
