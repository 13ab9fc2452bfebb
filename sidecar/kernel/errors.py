"""Errors a user can act on. The CLI prints them as one line, without a traceback."""

from __future__ import annotations


class AssistError(Exception):
    """Base class: a problem with the input, the configuration or the installation."""

    exit_code = 1


class InputError(AssistError):
    """A call file that cannot be read: missing, empty, corrupt or in a format we do not take."""

    exit_code = 2
    http_status = 400  # how the service answers it (a subclass may say otherwise)


class ModelNotFoundError(AssistError):
    """A model that is neither installed from its package nor present at a configured path."""

    exit_code = 3


class ConfigError(AssistError):
    """A setting (environment variable or option) with a value we cannot use."""

    exit_code = 4
