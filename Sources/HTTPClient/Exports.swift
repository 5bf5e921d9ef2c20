@_exported import Redaction
