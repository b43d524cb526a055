"""In-place reprovisioning of Flatcar machines that cannot brick them.

Pure: ``policy`` (shared with the Pulumi components), ``desired`` (the config and what it says),
``hoststate`` (host paths, records, ``HostFacts``), ``decide`` (phases or refusals), ``kept``
(kept files), ``propdiff`` (the provider's property diff), ``ere`` (keep regexes as GNU ERE),
``scripts`` (the shell scripts sent to the host, printed by the dry run).
I/O: ``facts`` (runs a script, parses its answers), ``preflight`` (the checks before the reset),
``source`` (the hosted config from the operator's side), ``procedure`` (the phases, rollback).
``messages``: what the user reads when something is refused or fails. docs/reprovision-faults.md
lists every fault.
"""
