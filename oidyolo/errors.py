"""User-facing errors: each says what is wrong and what to do, and the CLI prints it without a traceback."""


class OidyoloError(Exception):
    """Base class of every error caused by input, configuration or the environment, not by a bug."""


class ConfigError(OidyoloError):
    """A configuration value is invalid."""


class UnknownClassError(OidyoloError):
    """A requested class name is not in the catalogue."""


class DataFormatError(OidyoloError):
    """An input file (CSV, JSON, XML, image, annotation line) is malformed."""


class DownloadError(OidyoloError):
    """A remote file could not be fetched or failed its integrity check."""


class IntegrityError(DownloadError):
    """A fetched file has the wrong size or checksum."""
