import CZlib

/// gRPC's length-prefixed messages: a flag byte (1 = compressed), a 4-byte big-endian length, the
/// message.
public enum GRPCFraming {
    struct Malformed: Error, CustomStringConvertible {
        let description: String
    }

    /// The bytes of the prefix before each message: its compressed flag and its length.
    static let prefixBytes = 5

    /// One message with its 5-byte prefix.
    public static func frame(_ message: [UInt8], compressed: Bool = false) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(message.count + 5)
        let n = UInt32(message.count)
        out.append(compressed ? 1 : 0)
        out.append(UInt8(truncatingIfNeeded: n >> 24))
        out.append(UInt8(truncatingIfNeeded: n >> 16))
        out.append(UInt8(truncatingIfNeeded: n >> 8))
        out.append(UInt8(truncatingIfNeeded: n))
        out.append(contentsOf: message)
        return out
    }

    /// Splits a whole body into its messages: (compressed, bytes) each.
    static func messages(in body: [UInt8]) throws(Malformed) -> [(compressed: Bool, bytes: ArraySlice<UInt8>)] {
        var out: [(Bool, ArraySlice<UInt8>)] = []
        var i = 0
        while i < body.count {
            guard body.count - i >= 5 else { throw Malformed(description: "truncated message prefix (\(body.count - i) of 5 bytes)") }
            let flag = body[i]
            guard flag <= 1 else { throw Malformed(description: "invalid compressed flag \(flag)") }
            let length = Int(body[i + 1]) << 24 | Int(body[i + 2]) << 16 | Int(body[i + 3]) << 8 | Int(body[i + 4])
            guard body.count - i - 5 >= length else {
                throw Malformed(description: "message of \(length) bytes truncated at \(body.count - i - 5)")
            }
            out.append((flag == 1, body[(i + 5)..<(i + 5 + length)]))
            i += 5 + length
        }
        return out
    }
}

/// gzip through zlib, for `grpc-encoding: gzip`; also the bare zlib format (RFC 1950), which
/// go-micro's mDNS TXT records carry.
enum Gzip {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    enum Format {
        case gzip, zlib
        /// zlib's windowBits: 15 (32 KiB window), plus 16 for a gzip wrapper.
        var windowBits: Int32 { self == .gzip ? 15 + 16 : 15 }
    }

    /// Inflates a gzip member; fails beyond `limit` output bytes (a zip bomb is an error, not OOM).
    static func decompress(_ input: ArraySlice<UInt8>, limit: Int, format: Format = .gzip) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, format.windowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(description: "cannot start gzip decoder")
        }
        defer { inflateEnd(&stream) }
        var output = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        let status: Int32 = input.withUnsafeBufferPointer { inBuf in
            stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
            stream.avail_in = UInt32(inBuf.count)
            while true {
                let rc: Int32 = chunk.withUnsafeMutableBufferPointer { outBuf in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = UInt32(outBuf.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                if output.count + produced > limit { return Z_BUF_ERROR - 100 }
                output.append(contentsOf: chunk[..<produced])
                if rc == Z_STREAM_END { return Z_STREAM_END }
                if rc != Z_OK { return rc }
                if stream.avail_in == 0 && produced == 0 { return Z_DATA_ERROR }
            }
        }
        switch status {
        case Z_STREAM_END: return output
        case Z_BUF_ERROR - 100: throw Failure(description: "decompressed message exceeds \(limit) bytes")
        default: throw Failure(description: "corrupt gzip data (zlib \(status))")
        }
    }

    static func compress(_ input: [UInt8], format: Format = .gzip) -> [UInt8] {
        var stream = z_stream()
        guard deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, format.windowBits, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                            Int32(MemoryLayout<z_stream>.size)) == Z_OK
        else { return [] }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(input.count))))
        let written: Int = input.withUnsafeBufferPointer { inBuf in
            output.withUnsafeMutableBufferPointer { outBuf in
                stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
                stream.avail_in = UInt32(inBuf.count)
                stream.next_out = outBuf.baseAddress
                stream.avail_out = UInt32(outBuf.count)
                _ = deflate(&stream, Z_FINISH)
                return outBuf.count - Int(stream.avail_out)
            }
        }
        return Array(output[..<written])
    }
}
