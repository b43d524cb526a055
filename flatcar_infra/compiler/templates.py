"""Jinja2 rendering of config sources: sandboxed, bounded, values kept as data, errors located.

Configs (and so templates) come from repositories that anyone with commit access can change, and
they are rendered on operators' machines and in CI that hold cloud credentials. So:

- **Sandboxed**: ``jinja2.sandbox.SandboxedEnvironment`` refuses Python internals
  (``''.__class__.__mro__``…), which plain Jinja2 would let a template reach to run code.
- **Bounded** (``flatcar_infra.limits``): every loop iteration, call and operator spends a step of
  a budget, checked against a deadline too; the text produced (buffered blocks included) and any
  single value built (``'a' * n``, ``center(n)``, ``'%0999999d'``, ``replace``, ``~``) have a size
  limit checked *before* it is built. An endless or exponential template stops with an error at
  its line, in milliseconds, without the memory.
- **Values are data**: every ``{{ expression }}`` is one scalar's text, whatever it holds. Rendering
  puts a placeholder where the value goes; the YAML (or JSON) is parsed, and only then are the
  values put into the scalars (``yamlsrc.Placeholders``). A newline, ``: `` or a quote in a
  ``--var`` can never add an entry, and ``'{{ v }}'``, ``"{{ v }}"``, ``{{ v }}`` and a ``|``
  block all give exactly the value. Structure comes from the template's own text (``{% for %}``,
  ``{% if %}``) or, explicitly, from ``{{ value | tojson }}``, which inserts one JSON value (a
  list, a mapping, a quoted string: JSON is YAML) that cannot reach outside itself.
- **Deterministic**: the ``random`` filter and ``lipsum`` are removed (the output is hashed to
  decide whether a machine is reprovisioned). Undefined variables are errors (``StrictUndefined``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import jinja2
import jinja2.sandbox
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError

from flatcar_infra.compiler.yamlsrc import Placeholders
from flatcar_infra.errors import ConfigError, Diagnostic, Severity
from flatcar_infra.limits import LIMITS, Limits, human

_UNDEFINED_NAME = re.compile(r"^'(?P<name>[^']*)' is undefined$")

# Filters the code generator inserts; their names are not identifiers, so no template can call them.
_GUARD = "flatcar-infra guard"
_BASE_OPEN = 0xE000  # placeholders use a pair of private-use characters absent from the template


class TemplateLimit(Exception):
    """A template went over a limit (``flatcar_infra.limits``)."""


@dataclass(frozen=True)
class RenderedTemplate:
    """``text`` with a placeholder for every ``{{ expression }}``; ``placeholders`` holds the values
    (``parse_yaml(..., values=placeholders)`` puts them into the scalars)."""

    text: str
    placeholders: Placeholders

    def plain(self) -> str:
        """The text with the values pasted in: what the template looks like rendered (for people;
        never parse this: a value could change the structure)."""
        return self.placeholders.sub(self.text)


class _Budget:
    """What one rendering may still spend."""

    def __init__(self, limits: Limits, open_: str, close: str) -> None:
        self.limits = limits
        self.steps = limits.template_steps
        self.deadline = time.monotonic() + limits.template_seconds
        self.output = limits.template_output_bytes
        self.open, self.close = open_, close
        self.pattern = re.compile(re.escape(open_) + r"(\d+)" + re.escape(close))
        self.values: list[str] = []

    def step(self, n: int = 1) -> None:
        self.steps -= n
        if self.steps < 0:
            raise TemplateLimit(f"template evaluates more than {self.limits.template_steps} steps of loop "
                                "iterations, calls and operators (limit; an endless loop?)")
        if self.steps & 1023 < n and time.monotonic() > self.deadline:
            raise TemplateLimit(f"template takes more than {self.limits.template_seconds:g} s (limit)")

    def produce(self, n: int) -> None:
        self.output -= n
        if self.output < 0:
            raise TemplateLimit(f"template produces more than {human(self.limits.template_output_bytes)} "
                                "of text (limit)")

    def size(self, n: int) -> None:
        """A value about to be built of about ``n`` characters (or items)."""
        if n > self.limits.template_output_bytes:
            raise TemplateLimit(f"template builds a value of {n} characters or items, over the limit of "
                                f"{human(self.limits.template_output_bytes)}")

    def placeholder(self, value: str) -> str:
        if self.open in value:  # a macro's or block's text holding earlier values: now one value
            value = self.pattern.sub(lambda m: self.values[int(m.group(1))], value)
        self.produce(len(value))
        self.values.append(value)
        return f"{self.open}{len(self.values) - 1}{self.close}"


_BUDGET: ContextVar[_Budget] = ContextVar("flatcar_infra_template_budget")


def _budget() -> _Budget:
    return _BUDGET.get()


def _length(value: Any) -> int:
    if isinstance(value, str | bytes | bytearray | list | tuple | dict | set | frozenset):
        return len(value)
    return 0


def _check_ints(args: Iterable[Any]) -> None:
    """Widths and counts (``center(n)``, ``ljust(n)``, ``indent(n)``): bounded like a value."""
    budget = _budget()
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool):
            budget.size(abs(a))


_FORMAT_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+)|\{[^{}]*?:[^{}\d]*(\d+)[^{}]*\}")


def _check_format(fmt: Any, args: Iterable[Any]) -> None:
    """``'%0999999999d' % 1`` or ``'{:>999999999}'.format(1)``: one C call, a gigabyte."""
    if isinstance(fmt, str):
        for m in _FORMAT_WIDTH.finditer(fmt):
            _budget().size(int(m.group(1) or m.group(2)))
        if "*" in fmt:
            _check_ints(args if isinstance(args, tuple | list) else (args,))


def _check_replace(s: Any, old: Any, new: Any) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        count = s.count(old) if old else len(s) + 1
        _budget().size(len(s) + count * max(len(new) - len(old), 0))


def _check_call(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    func = getattr(func, "__wrapped__", func)  # the sandbox wraps str.format
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", "")
    if isinstance(owner, str | bytes | list | tuple):
        _check_ints(args)
        _check_ints(kwargs.values())
        if name == "replace" and len(args) >= 2:
            _check_replace(owner, args[0], args[1])
        elif name in ("format", "format_map"):
            _check_format(owner, ())
        elif name == "join" and args and isinstance(args[0], list | tuple):
            seq: list[Any] | tuple[Any, ...] = args[0]
            _budget().size(len(owner) * len(seq) + sum(_length(x) for x in seq[:100_000]))


_CALL_STEPS = 10  # a call (a macro's above all) costs about ten loop iterations


class _Environment(jinja2.sandbox.SandboxedEnvironment):
    """The sandbox plus the budget: calls, operators and loops spend steps; sizes are checked
    before a value is built."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step(_CALL_STEPS)
        _check_call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        budget.size(_length(result))
        return result

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.step()
        if op == "*":
            for seq, n in ((left, right), (right, left)):
                if _length(seq) and isinstance(n, int):
                    budget.size(_length(seq) * abs(n))
        elif op == "+":
            budget.size(_length(left) + _length(right))
        elif op == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            budget.size(abs(right) * abs(left).bit_length() // 8)
        elif op == "%":
            _check_format(left, right)
        return super().call_binop(context, op, left, right)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Every ``{% for %}`` iterates through the budget guard."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _GUARD, [], [], None, None, lineno=loop.lineno)
        return tree


class _CodeGenerator(CodeGenerator):
    """Counts the template's literal text (it is not finalized) and bounds ``~`` concatenation."""

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        literal = sum(len(child.data) for child in node.nodes if isinstance(child, nodes.TemplateData))
        if literal:
            self.writeline(f"environment.flatcar_infra_produce({literal})")
        super().visit_Output(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.flatcar_infra_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _guard(iterable: Any) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


def _produce(n: int) -> None:
    _budget().produce(n)


def _concat(parts: tuple[Any, ...]) -> str:
    texts = [str(p) for p in parts]
    _budget().size(sum(len(t) for t in texts))
    return "".join(texts)


@jinja2.pass_context
def _finalize(context: jinja2.runtime.Context, value: Any) -> str:
    """An expression's value becomes a placeholder (data); ``tojson`` output goes in as JSON."""
    if isinstance(value, _Json):
        _budget().produce(len(value))
        return str(value)
    return _budget().placeholder("" if value is None else str(value))


class _Json(str):
    """Text of one JSON value, made by our ``tojson``: inserted as is."""


# Characters YAML reads as line breaks or refuses (C1 controls, DEL, BOM, surrogates): escaped, so
# the JSON means the same to a YAML parser.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff]")


def _tojson(value: Any) -> _Json:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    _budget().size(len(text))
    return _Json(_YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text))


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter with its width/count arguments and its result size bounded."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        values = args[1:] if getattr(func, "jinja_pass_arg", None) is not None else args
        _check_ints(values[1:])
        _check_ints(kwargs.values())
        if name == "replace" and len(values) >= 3:
            _check_replace(str(values[0]), values[1], values[2])
        elif name == "format" and values:
            _check_format(values[0], values[1:])
        result = func(*args, **kwargs)
        budget.size(_length(result))
        return result

    for attr in ("jinja_pass_arg",):
        if hasattr(func, attr):
            setattr(wrapper, attr, getattr(func, attr))
    return wrapper


def _make_environment() -> _Environment:
    env = _Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
        finalize=_finalize,
    )
    env.code_generator_class = _CodeGenerator
    env.filters.pop("random", None)
    env.globals.pop("lipsum", None)
    for name, func in list(env.filters.items()):
        env.filters[name] = _bounded_filter(name, func)
    env.filters["tojson"] = _tojson
    env.filters[_GUARD] = _guard
    env.flatcar_infra_produce = _produce  # type: ignore[attr-defined]
    env.flatcar_infra_concat = _concat  # type: ignore[attr-defined]
    return env


_ENV = _make_environment()


def _placeholder_pair(text: str) -> tuple[str, str]:
    """Two private-use characters the template does not contain (so no literal text can look like
    a placeholder)."""
    code = _BASE_OPEN
    while chr(code) in text or chr(code + 1) in text:
        code += 2
    return chr(code), chr(code + 1)


def render_template(
    text: str, filename: str, variables: Mapping[str, Any], *, limits: Limits = LIMITS
) -> RenderedTemplate:
    """Render ``text`` (named ``filename`` in errors) with ``variables``.

    Raises ``ConfigError`` with one diagnostic located at the template line for a syntax error, an
    undefined variable, a refused (unsafe) operation, a limit, or any other failure while rendering.
    """
    open_, close = _placeholder_pair(text)
    budget = _Budget(limits, open_, close)
    token = _BUDGET.set(budget)
    try:
        return _render(text, filename, variables, budget)
    finally:
        _BUDGET.reset(token)


def _render(text: str, filename: str, variables: Mapping[str, Any], budget: _Budget) -> RenderedTemplate:
    try:
        code = _ENV.compile(text, name=filename, filename=filename)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            [_diag(filename, exc.lineno or 1, f"template syntax error: {exc.message}")]
        ) from None
    except (TemplateLimit, RecursionError, MemoryError) as exc:  # constant folding at compile time
        raise ConfigError([_diag(filename, 1, _limit_message(exc))]) from None
    template = _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None))
    try:
        out: list[str] = []
        for chunk in template.generate(dict(variables)):
            out.append(chunk)
        return RenderedTemplate("".join(out), Placeholders(budget.open, budget.close, tuple(budget.values)))
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
            [_diag(filename, exc.lineno or 1, f"template syntax error: {exc.message}")]
        ) from None
    except jinja2.TemplateError as exc:
        line = _template_line(exc.__traceback__, filename)
        raise ConfigError([_diag(filename, line, f"template error: {exc}")]) from None
    except (TemplateLimit, RecursionError, MemoryError) as exc:
        line = _template_line(exc.__traceback__, filename)
        raise ConfigError([_diag(filename, line, _limit_message(exc))]) from None
    except Exception as exc:
        # The template is user code: its runtime failures (a division by zero, a bad filter argument,
        # an overflow) are user mistakes to report at their line, not tracebacks.
        line = _template_line(exc.__traceback__, filename)
        raise ConfigError([_diag(filename, line, f"template error: {type(exc).__name__}: {exc}")]) from None


def _limit_message(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "template recursion too deep (limit)"
    if isinstance(exc, MemoryError):
        return "template ran out of memory"
    return str(exc)


def _template_line(tb: TracebackType | None, filename: str) -> int:
    """The template line of the innermost frame that belongs to the template (1 when unknown).

    Jinja2 rewrites the traceback of a rendering error so that template frames carry the template's
    filename and source line; the last such frame is where the error happened.
    """
    line = 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line or 1


def _diag(filename: str, line: int, message: str) -> Diagnostic:
    return Diagnostic(filename, line, 1, Severity.ERROR, message, "$")


__all__ = ["RenderedTemplate", "TemplateLimit", "render_template"]
