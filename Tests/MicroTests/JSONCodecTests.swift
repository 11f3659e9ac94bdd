import Foundation
@testable import Micro
import Testing

/// The JSON fast path must agree with Foundation's coders on every value: same decoded values,
/// same errors, and output that Foundation reads back to the same value.
@Suite struct JSONCodecTests {
    enum Color: String, Codable, Equatable { case red, green }
    enum Level: Int, Codable, Equatable { case low = 1, high = 9 }
    enum Shape: Codable, Equatable {
        case circle(radius: Double)
        case box(w: Int, h: Int)
        case empty
    }
    struct Inner: Codable, Equatable {
        var id: Int64
        var tags: [String]
        var ratio: Float?
    }
    struct Everything: Codable, Equatable {
        var text: String
        var int: Int
        var small: Int8
        var unsigned: UInt32
        var big: Int64
        var double: Double
        var flag: Bool
        var missing: String?
        var present: Int?
        var list: [Int]
        var nested: [[String]]
        var inner: Inner
        var inners: [Inner]
        var map: [String: Int]
        var color: Color
        var level: Level
        var shapes: [Shape]
        var data: Data
        var url: URL
        var date: Date
        var optionalArray: [Int?]
    }

    static let sample = Everything(
        text: "héllo \"quoted\" \\ back/slash\n\t\u{01} 😀 日本", int: -42, small: -128, unsigned: 4_000_000_000,
        big: Int64.min, double: 0.1, flag: true, missing: nil, present: 7, list: [1, 2, 3], nested: [[], ["a"], ["b", "c"]],
        inner: Inner(id: Int64.max, tags: ["x"], ratio: 0.5),
        inners: [Inner(id: 1, tags: [], ratio: nil), Inner(id: 2, tags: ["y", "z"], ratio: -1.25)],
        map: ["one": 1, "two": 2], color: .green, level: .high,
        shapes: [.circle(radius: 2.5), .box(w: 3, h: 4), .empty],
        data: Data([0, 1, 2, 250, 255]), url: URL(string: "https://example.com/a?b=c")!,
        date: Date(timeIntervalSinceReferenceDate: 12345.5), optionalArray: [1, nil, 3])

    func foundationValue(_ bytes: [UInt8]) throws -> NSObject {
        try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) as! NSObject
    }

    @Test func encodesWhatFoundationReadsBack() throws {
        let ours = try StreamEncoder.encode(Self.sample)  // the fast path itself, no fallback
        #expect(try JSONDecoder().decode(Everything.self, from: Data(ours)) == Self.sample)
        #expect(try foundationValue(ours) == foundationValue(Array(JSONEncoder().encode(Self.sample))))
    }

    @Test func decodesWhatFoundationWrites() throws {
        let bytes = Array(try JSONEncoder().encode(Self.sample))
        #expect(try TapeDecoder.decode(Everything.self, from: bytes) == Self.sample)  // no fallback
        #expect(try JSONCodec().decode(Everything.self, from: bytes) == Self.sample)
    }

    @Test func scalarsAndEdgeNumbers() throws {
        let codec = JSONCodec()
        for value in [0.0, -0.0, 1.5, 1e100, -2.5e-300, Double.pi, 123456789.0] {
            #expect(try codec.decode(Double.self, from: codec.encode(value)) == value)
        }
        for value in [0, 1, -1, Int.max, Int.min] {
            #expect(try codec.encode(value) == Array(String(value).utf8))
            #expect(try codec.decode(Int.self, from: codec.encode(value)) == value)
        }
        #expect(try codec.decode(UInt64.self, from: Array("18446744073709551615".utf8)) == UInt64.max)  // via Foundation
        #expect(try codec.decode(Double.self, from: Array("1E3".utf8)) == 1000)
        #expect(try codec.decode([Int].self, from: Array(" [ 1 , 2 ] ".utf8)) == [1, 2])
        #expect(try codec.decode(String.self, from: Array(#""\u00e9\ud83d\ude00\/""#.utf8)) == "é😀/")
        #expect(try codec.decode(Decimal.self, from: Array("12.5".utf8)) == Decimal(string: "12.5"))
        #expect(try codec.encode(["k": Decimal(string: "1.25")!]) == Array(#"{"k":1.25}"#.utf8))
    }

    @Test func errorsAreFoundations() throws {
        struct Need: Codable { var name: String; var age: Int }
        let codec = JSONCodec()
        for bad in ["{", #"{"name":"x"}"#, #"{"name":1,"age":2}"#, #"{"name":"x","age":"2"}"#, "[1,]", #"{"name":"x","age":2} x"#,
                    "", #"{"name":"x","age":2.5}"#, #"{"name":"x","age":99999999999999999999}"#] {
            var ours: String?, theirs: String?
            do { _ = try codec.decode(Need.self, from: Array(bad.utf8)) } catch { ours = "\(error)" }
            do { _ = try JSONDecoder().decode(Need.self, from: Data(bad.utf8)) } catch { theirs = "\(error)" }
            #expect(ours != nil, "\(bad) decoded")
            #expect(ours == theirs, "\(bad)")
        }
    }

    @Test func outOfOrderEncodersFallBackToFoundation() throws {
        class Base: Codable { var a = 1 }
        final class Derived: Base, @unchecked Sendable {  // test-only; never shared
            var b = 2
            enum K: CodingKey { case b }
            override func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: K.self)
                try c.encode(b, forKey: .b)
                try super.encode(to: c.superEncoder())
            }
        }
        #expect(throws: StreamEncoder.Unsupported.self) { try StreamEncoder.encode(Derived()) }
        let bytes = try JSONCodec().encode(Derived())
        #expect(try foundationValue(bytes) == foundationValue(Array(JSONEncoder().encode(Derived()))))
    }

    @Test func emptyAndKeyOrder() throws {
        struct Empty: Codable, Equatable {}
        struct Ordered: Codable { var z = 1, a = 2, m = 3 }
        #expect(try JSONCodec().encode(Empty()) == Array("{}".utf8))
        #expect(try JSONCodec().encode(Ordered()) == Array(#"{"z":1,"a":2,"m":3}"#.utf8))
        #expect(try JSONCodec().decode(Empty.self, from: Array(#"{"extra":[1,{"x":null}]}"#.utf8)) == Empty())
    }
}
