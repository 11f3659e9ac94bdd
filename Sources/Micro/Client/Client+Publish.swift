import Foundation

extension Client {
    /// Publishes `value` to `topic`, encoded with the codec of `contentType` (JSON by default).
    /// Subscribers see `Content-Type`, `Micro-Topic`, `Micro-Id` and `metadata` as headers.
    ///
    /// ```swift
    /// try await client.publish("orders", Order(id: 7))                             // queued
    /// try await client.publish("orders", Order(id: 8), options: .init(wait: .delivered))
    /// ```
    public func publish<Message: Encodable & Sendable>(
        _ topic: String,
        _ value: Message,
        options: PublishOptions = .init(),
        contentType: String = "application/json",
        metadata: [String: String] = [:]
    ) async throws {
        guard let codec = codecs.codec(for: contentType) else {
            throw MicroError(id: "micro.client", code: 400, detail: "unsupported content type \(contentType)")
        }
        let body: [UInt8]
        do {
            body = try codec.encode(value)
        } catch {
            throw MicroError(id: "micro.client", code: 400, detail: "cannot encode \(Message.self) as \(codec.contentType): \(error)")
        }
        try await publish(topic, body: body, options: options, contentType: codec.contentType, metadata: metadata)
    }

    /// Publishes a body already encoded in `contentType`.
    public func publish(
        _ topic: String,
        body: [UInt8],
        options: PublishOptions = .init(),
        contentType: String = "application/json",
        metadata: [String: String] = [:]
    ) async throws {
        var header = metadata
        header["Content-Type"] = contentType
        header["Micro-Topic"] = topic
        header["Micro-Id"] = UUID().uuidString.lowercased()
        try await broker.publish(topic, BrokerMessage(header: header, body: body), options: options)
    }
}
