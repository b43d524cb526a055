"""flatcar-infra: Flatcar machines as immutable infrastructure, reprovisioned in place."""

from flatcar_infra.compiler import CompiledConfig, compile_config, compile_file

__all__ = ["CompiledConfig", "compile_config", "compile_file"]
__version__ = "0.1.0"
