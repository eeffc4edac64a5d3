// How a message keeps its payload: in the form it arrived in, converted only when the other
// form is asked for. A JSON payload decoded from MessagePack stays MessagePack (so encoding it
// to MessagePack again is a copy); its JSON text is made on first use and kept.
import Synchronization

/// What `Message.payloadStorage` holds.
enum PayloadForm: UInt8, Sendable {
    /// The payload bytes exactly as `payload` gives them (JSON text for a JSON payload), not
    /// checked by the library (set through `payload`).
    case bytes
    /// JSON text this library checked to be one JSON value within the depth ceiling (by the
    /// JSON decoder or `setPayload(json:)`), so the JSON encoder copies it without checking it
    /// again.
    case checkedJSON
    /// A JSON payload as it arrived in MessagePack: one MessagePack value that the decoder
    /// checked exactly as a transcode to JSON checks it (well formed, within the depth limit,
    /// every str valid UTF-8, map keys str, no bin or ext, finite floats) and found in the form
    /// our encoder writes for its JSON text (smallest int, str, array and map headers; float64),
    /// so the MessagePack encoder copies it and writes the bytes a transcode would write.
    /// `payload` gives its JSON text, transcoded on first use and cached in `payloadJSONCache`.
    case msgpack
}

/// The JSON text of a `.msgpack` payload, once made (held retained by `payloadJSONCache`).
final class PayloadText {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
}

extension Message {
    /// The payload bytes (nil: the envelope has no payload). For `.json` they are JSON text.
    ///
    /// A JSON payload decoded from MessagePack is kept as MessagePack. The first read of
    /// `payload` transcodes it to JSON text and keeps that text (one allocation); later reads
    /// return the same array until the payload changes. The first read may therefore happen
    /// on several threads at once on a message shared read-only: the text is published with
    /// an atomic compare-exchange (the loser drops its copy), so that is safe. Setting
    /// `payload` is a mutation (one thread, before the message is shared, as for every
    /// field); it stores the bytes as given.
    public var payload: [UInt8]? {
        get {
            guard payloadForm == .msgpack, let mp = payloadStorage else { return payloadStorage }
            return payloadJSONText(mp)
        }
        set {
            dropPayloadJSONCache()
            payloadStorage = newValue
            payloadForm = .bytes
        }
    }

    /// The stored payload's size in bytes (no transcoding), for size estimates.
    var storedPayloadCount: Int { payloadStorage?.count ?? 0 }

    /// Stores JSON text the caller has checked (one JSON value within the depth ceiling).
    func setCheckedJSONPayload(_ json: [UInt8]) {
        dropPayloadJSONCache()
        payloadStorage = json
        payloadForm = .checkedJSON
    }

    /// Takes `other`'s payload in the same form, sharing its cached JSON text (for `copy()`,
    /// on a new message).
    func copyPayload(from other: Message) {
        dropPayloadJSONCache()
        payloadStorage = other.payloadStorage
        payloadForm = other.payloadForm
        if let p = other.payloadJSONCache.load(ordering: .acquiring) {
            _ = Unmanaged<PayloadText>.fromOpaque(p).retain()
            payloadJSONCache.store(p, ordering: .releasing)
        }
    }

    /// Releases the cached JSON text (on a mutation of the payload, or in deinit: no reader
    /// runs at the same time, so a plain load skips the atomic exchange when there is none).
    @inline(__always)
    func dropPayloadJSONCache() {
        guard payloadJSONCache.load(ordering: .acquiring) != nil else { return }
        if let p = payloadJSONCache.exchange(nil, ordering: .acquiringAndReleasing) {
            Unmanaged<PayloadText>.fromOpaque(p).release()
        }
    }

    /// The JSON text of the `.msgpack` payload `mp`: the cached one, or a new transcoding
    /// published by compare-exchange (if another thread published first, its text is used).
    private func payloadJSONText(_ mp: [UInt8]) -> [UInt8] {
        if let p = payloadJSONCache.load(ordering: .acquiring) {
            return Unmanaged<PayloadText>.fromOpaque(p).takeUnretainedValue().bytes
        }
        let text = MsgPackEnvelope.jsonText(ofCheckedPayload: mp)
        let box = Unmanaged.passRetained(PayloadText(text))
        let (won, current) = payloadJSONCache.compareExchange(
            expected: nil, desired: box.toOpaque(), ordering: .acquiringAndReleasing)
        if won { return text }
        box.release()
        guard let current else { return text }
        return Unmanaged<PayloadText>.fromOpaque(current).takeUnretainedValue().bytes
    }
}
