"""Config compiler: Butane (flatcar), Container Linux Config and Ignition JSON → canonical Ignition."""

from flatcar_infra.compiler.api import STAMP_PATH, CompiledConfig, compile_config, compile_file, detect_kind

__all__ = ["STAMP_PATH", "CompiledConfig", "compile_config", "compile_file", "detect_kind"]
