"""The technique API: hook specifications, markers, the per-model manager, the registry, the
:class:`Technique` base. The services techniques share are in :mod:`lstm_plugins.toolkit`."""

from lstm_plugins.techniques import hookspecs
from lstm_plugins.techniques._manager import TechniqueManager, TechniqueValidationError, build_technique_manager
from lstm_plugins.techniques._markers import PROJECT_NAME, hookimpl, hookspec
from lstm_plugins.techniques._registry import (
    BLOCK_ENVIRONMENT_VARIABLE,
    DISABLE_ENVIRONMENT_VARIABLE,
    TechniqueInfo,
    TechniqueSpec,
    available_techniques,
    load_technique,
    resolve_technique,
    technique_specs,
)
from lstm_plugins.techniques._search_space import Choice, FloatRange, IntRange, SearchValue
from lstm_plugins.techniques._technique import Technique, technique_name

__all__ = [
    "BLOCK_ENVIRONMENT_VARIABLE",
    "DISABLE_ENVIRONMENT_VARIABLE",
    "Choice",
    "FloatRange",
    "IntRange",
    "PROJECT_NAME",
    "SearchValue",
    "Technique",
    "TechniqueInfo",
    "TechniqueManager",
    "TechniqueSpec",
    "TechniqueValidationError",
    "available_techniques",
    "build_technique_manager",
    "hookimpl",
    "hookspec",
    "hookspecs",
    "load_technique",
    "resolve_technique",
    "technique_name",
    "technique_specs",
]
