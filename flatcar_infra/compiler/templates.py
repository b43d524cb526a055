"""Jinja2 rendering of config sources, with errors located on the template line.

Configs (and so templates) come from repositories that anyone with commit access can change, and
they are rendered on operators' machines and in CI that hold cloud credentials. Plain Jinja2 lets a
template walk from any value to Python internals (``''.__class__.__mro__``…) and run code, so we
render in ``jinja2.sandbox.SandboxedEnvironment``, which refuses access to unsafe attributes.

Output must be deterministic (the compiled bytes are hashed to decide whether a machine is
reprovisioned), so the two sources of randomness Jinja2 ships, the ``random`` filter and the
``lipsum`` global, are removed. Undefined variables are errors (``StrictUndefined``): a typo must
never silently render as an empty string into a machine's config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import jinja2
import jinja2.sandbox
from jinja2.exceptions import SecurityError

from flatcar_infra.errors import ConfigError, Diagnostic, Severity

_UNDEFINED_NAME = re.compile(r"^'(?P<name>[^']*)' is undefined$")


def _make_environment() -> jinja2.sandbox.SandboxedEnvironment:
    env = jinja2.sandbox.SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
    )
    env.filters.pop("random", None)
    env.globals.pop("lipsum", None)
    return env


_ENV = _make_environment()


def render_template(text: str, filename: str, variables: Mapping[str, Any]) -> str:
    """Render ``text`` (named ``filename`` in errors) with ``variables``.

    Raises ``ConfigError`` with one diagnostic located at the template line for a syntax error, an
    undefined variable, a refused (unsafe) operation or any other failure while rendering.
    """
    try:
        code = _ENV.compile(text, name=filename, filename=filename)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            [_diag(filename, exc.lineno or 0, f"template syntax error: {exc.message}")]
        ) from None
    template = _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None))
    try:
        return template.render(dict(variables))
    except jinja2.UndefinedError as exc:
        line = _template_line(exc.__traceback__, filename)
        message = str(exc.message or exc)
        match = _UNDEFINED_NAME.match(message)
        if match:
            text_msg = f"undefined template variable '{match['name']}'"
        else:
            text_msg = f"undefined template value: {message}"
        raise ConfigError([_diag(filename, line, text_msg)]) from None
    except SecurityError as exc:
        line = _template_line(exc.__traceback__, filename)
        raise ConfigError(
            [_diag(filename, line, f"template operation refused by the sandbox: {exc}")]
        ) from None
    except jinja2.TemplateSyntaxError as exc:  # e.g. an {% include %} of something that does not parse
        raise ConfigError(
            [_diag(filename, exc.lineno or 0, f"template syntax error: {exc.message}")]
        ) from None
    except jinja2.TemplateError as exc:
        line = _template_line(exc.__traceback__, filename)
        raise ConfigError([_diag(filename, line, f"template error: {exc}")]) from None
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        # The template is user code: its runtime failures (a division by zero, a bad filter argument)
        # are user mistakes to report at their line, not tracebacks.
        line = _template_line(exc.__traceback__, filename)
        raise ConfigError([_diag(filename, line, f"template error: {type(exc).__name__}: {exc}")]) from None


def _template_line(tb: TracebackType | None, filename: str) -> int:
    """The template line of the innermost frame that belongs to the template.

    Jinja2 rewrites the traceback of a rendering error so that template frames carry the template's
    filename and source line; the last such frame is where the error happened.
    """
    line = 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _diag(filename: str, line: int, message: str) -> Diagnostic:
    return Diagnostic(filename, line, 1 if line else 0, Severity.ERROR, message, "$")
