"""Exception types. Each message names the cause and what to do about it."""

from __future__ import annotations


class TutorNBError(Exception):
    """Base class for every error tutor_nb raises on purpose."""


class MissingAPIKeyError(TutorNBError):
    """No API key was found in any of the places tutor_nb looks."""


class NoCodeCallsError(TutorNBError):
    """The object given holds no code-interpreter calls."""


class RunNotCompletedError(NoCodeCallsError):
    """No code to read because the run did not complete; the message says how it ended and why."""


class RuntimeStartError(TutorNBError):
    """The local runtime could not be started."""


class ModelBackendError(TutorNBError):
    """The model behind the runtime failed; the message becomes the run's ``last_error``."""


class NoRecordedTurnError(ModelBackendError):
    """The replay backend has no recorded turn for this conversation."""


class SandboxError(TutorNBError):
    """The code interpreter could not run code at all (not: the code raised)."""


class BackendConfigError(TutorNBError):
    """The model backend settings do not fit together (unknown name, recording without a model)."""


class CassetteError(TutorNBError):
    """A replay cassette file is missing or not in the expected shape."""


class MisspelledKeyWarning(UserWarning):
    """An API key was found under the walkthrough's misspelled name OPEN_API_KEY."""


class PanelBusyError(TutorNBError):
    """The chat panel is already running a message; wait for it or stop it first."""


class PanelTimeoutError(TutorNBError, TimeoutError):
    """``ChatPanel.wait`` ran out of time before the run ended (the run goes on)."""


class ExportFormatError(TutorNBError, ValueError):
    """``ChatPanel.export`` was asked for a format it does not write."""
