"""Reviewable config changes: per machine, which entries change and what applying them does.

``diff`` (pure: two Ignition documents → changes keyed like the manifest), ``effect`` and
``model`` (pure: the policy's consequences, the plan value), ``render`` (text, Markdown, JSON),
``sources`` (the only I/O: files, ``git:REV:path``, stacks at a revision).
"""

from flatcar_infra.plan.diff import Action, Change, ConfigDiff, SecretRules, diff_ignition
from flatcar_infra.plan.model import MachinePlan, Plan, plan_machine
from flatcar_infra.plan.render import plan_json, render_json, render_markdown, render_text

__all__ = [
    "Action",
    "Change",
    "ConfigDiff",
    "MachinePlan",
    "Plan",
    "SecretRules",
    "diff_ignition",
    "plan_json",
    "plan_machine",
    "render_json",
    "render_markdown",
    "render_text",
]
