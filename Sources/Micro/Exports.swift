@_exported public import MicroCore
