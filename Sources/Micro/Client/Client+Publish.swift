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
        let send: (ClientCall) async throws -> ClientResponse = { call in
            var header = call.options.metadata
            header["Content-Type"] = contentType
            header["Micro-Topic"] = topic
            header["Micro-Id"] = UUID().uuidString.lowercased()
            var body = call.message ?? []
            if let tap = call.taps.request { body = try tap(body) }
            try await self.broker.publish(topic, BrokerMessage(header: header, body: body), options: options)
            return ClientResponse(body: [], metadata: Metadata())
        }
        let call = ClientCall(descriptor: CallDescriptor(service: "", endpoint: topic, kind: .publish, wire: .broker),
                              options: CallOptions(contentType: contentType, metadata: metadata), message: body)
        // the interceptors see the publish; `metadata` is in call.options.metadata, as headers
        _ = interceptors.isEmpty ? try await send(call) : try await interceptors.run(call, send)
    }
}
