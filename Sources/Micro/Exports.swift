// What a service author needs of MicroCore comes with `import Micro`; the rest of the core
// (its HTTP client and server, load drivers, datagram sockets, certificate factory) is for the
// framework, its tools and benchmarks, which `import MicroCore` themselves.
@_exported public import class MicroCore.EventLoop
@_exported public import class MicroCore.EventLoopGroup
@_exported public import struct MicroCore.HTTPHeaders
@_exported public import struct MicroCore.HTTPServerRequest
@_exported public import struct MicroCore.HTTPServerResponse
@_exported public import struct MicroCore.HTTPServerConfiguration
@_exported public import struct MicroCore.HTTPBodyStream
@_exported public import struct MicroCore.TLSConfig
@_exported public import struct MicroCore.TLSPeer
@_exported public import struct MicroCore.MicroCoreError
