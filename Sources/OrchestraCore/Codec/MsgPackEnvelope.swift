// The envelope in MessagePack: a top-level map with the same str keys as the JSON form
// (EnvelopeCodec.swift). JSON-typed values are carried as native MessagePack values
// (MsgPackJSON.swift).

enum MsgPackEnvelope {
    static func encode(_ m: Message, into w: inout ByteWriter) throws(OrchestraError) {
        try checkEncodable(m)
        let hasOthers = m.metadata.contains { $0.key != metaCompressed && $0.key != metaEncrypted }
        let hasMetadata = m.compressed || m.encrypted || hasOthers
        var count = 2
        if m.timestamp != nil { count += 1 }
        if m.textStorage(.version) != nil { count += 1 }
        if m.textStorage(.source) != nil { count += 1 }
        if m.textStorage(.target) != nil { count += 1 }
        if m.textStorage(.correlationId) != nil { count += 1 }
        if m.textStorage(.replyTo) != nil { count += 1 }
        if m.ttl != nil { count += 1 }
        if m.priority != nil { count += 1 }
        if m.contentType != .json { count += 1 }
        if m.headerCount > 0 { count += 1 }
        if hasMetadata { count += 1 }
        count += m.extensions.count
        if m.payloadStorage != nil { count += 1 }

        try MsgPackWriter.writeContainerHeader(map: true, count: count, into: &w)
        MsgPackWriter.writeKey("id", into: &w)
        try MsgPackWriter.writeStr(m.textStorage(.id) ?? UnsafeRawBufferPointer(start: nil, count: 0), into: &w, what: "id")
        MsgPackWriter.writeKey("type", into: &w)
        try MsgPackWriter.writeStr(m.textStorage(.type) ?? UnsafeRawBufferPointer(start: nil, count: 0), into: &w, what: "type")
        if let ts = m.timestamp {
            MsgPackWriter.writeKey("timestamp", into: &w)
            MsgPackWriter.writeInt(ts, into: &w)
        }
        try writeText(m, .version, "version", into: &w)
        try writeText(m, .source, "source", into: &w)
        try writeText(m, .target, "target", into: &w)
        try writeText(m, .correlationId, "correlationId", into: &w)
        try writeText(m, .replyTo, "replyTo", into: &w)
        if let ttl = m.ttl {
            MsgPackWriter.writeKey("ttl", into: &w)
            MsgPackWriter.writeInt(ttl, into: &w)
        }
        if let p = m.priority {
            MsgPackWriter.writeKey("priority", into: &w)
            MsgPackWriter.writeUInt(UInt64(p.rawValue), into: &w)
        }
        switch m.contentType {
        case .json: break
        case .text:
            MsgPackWriter.writeKey("contentType", into: &w)
            MsgPackWriter.writeKey("text/plain", into: &w)
        case .binary:
            MsgPackWriter.writeKey("contentType", into: &w)
            MsgPackWriter.writeKey("application/octet-stream", into: &w)
        }
        let headerCount = m.headerCount
        if headerCount > 0 {
            MsgPackWriter.writeKey("headers", into: &w)
            try MsgPackWriter.writeContainerHeader(map: true, count: headerCount, into: &w)
            for i in 0..<headerCount { try MsgPackWriter.writeHeader(m.headerStorage(at: i), into: &w) }
        }
        if hasMetadata {
            MsgPackWriter.writeKey("metadata", into: &w)
            let others = m.metadata.filter { $0.key != metaCompressed && $0.key != metaEncrypted }
            let n = (m.compressed ? 1 : 0) + (m.encrypted ? 1 : 0) + others.count
            try MsgPackWriter.writeContainerHeader(map: true, count: n, into: &w)
            if m.compressed { MsgPackWriter.writeKey("compressed", into: &w); w.append(0xC3) }
            if m.encrypted { MsgPackWriter.writeKey("encrypted", into: &w); w.append(0xC3) }
            for f in others { try writeField(f, into: &w, what: "metadata") }
        }
        for e in m.extensions { try writeField(e, into: &w, what: "extension") }
        if m.payloadForm == .msgpack, m.contentType == .json, !m.compressed, !m.encrypted,
           let mp = m.payloadStorage {
            // Checked at decoding and in the form jsonToMsgPack writes: a copy.
            MsgPackWriter.writeKey("payload", into: &w)
            w.append(mp)
        } else if let p = m.payload {
            MsgPackWriter.writeKey("payload", into: &w)
            if m.compressed || m.encrypted || m.contentType == .binary {
                try MsgPackWriter.writeBin(p, into: &w)
            } else if m.contentType == .text {
                try MsgPackWriter.writeStr(p, into: &w, what: "text payload")
            } else {
                try jsonToMsgPack(p, into: &w, what: "JSON payload")
            }
        }
    }

    /// Key `key` and the value of text field `f`, when the message has it.
    @inline(__always)
    private static func writeText(_ m: Message, _ f: TextField, _ key: StaticString, into w: inout ByteWriter) throws(OrchestraError) {
        guard let v = m.textStorage(f) else { return }
        MsgPackWriter.writeKey(key, into: &w)
        try MsgPackWriter.writeStr(v, into: &w, what: f.jsonName)
    }

    private static func writeField(_ f: Field, into w: inout ByteWriter, what: StaticString) throws(OrchestraError) {
        try MsgPackWriter.writeStr(f.key, into: &w, what: "\(what) key")
        switch f.value {
        case .string(let s):
            try MsgPackWriter.writeStr(s, into: &w, what: "\(what) \"\(String(decoding: f.key, as: UTF8.self))\"")
        case .json(let j):
            try jsonToMsgPack(j, into: &w, what: "\(what) \"\(String(decoding: f.key, as: UTF8.self))\"")
        }
    }

    // MARK: Decoding

    static func envelopeError(_ at: Int, _ message: String) -> OrchestraError {
        EnvelopeFields.error(at, message)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits) throws(OrchestraError) -> Message {
        // The text fields and headers go into one TextBlock, as in the JSON decoder.
        try TextCollector.collecting { (text) throws(OrchestraError) in try decodeBody(bytes, limits: limits, text: &text) }
    }

    private static func decodeBody(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits, text: inout TextCollector) throws(OrchestraError) -> Message {
        var r = MsgPackReader(bytes, maxDepth: limits.effectiveDepth)
        guard case .map(let count) = try r.next() else {
            throw r.fail("the envelope must be a map", at: 0)
        }
        if r.maxDepth < 1 { throw r.tooDeep(at: 0) }

        var f = EnvelopeFields()
        var payloadPos: Int?
        var seen: UInt32 = 0

        for _ in 0..<count {
            let keyPos = r.pos
            let key = try r.readStr("an envelope key")
            let valuePos = r.pos
            guard let k = EnvelopeKey.lookup(key) else {
                let json = try r.transcodeToJSON(depth: 1)
                f.extensions.append(Field(key: makeBytes(key), value: .json(json)))
                continue
            }
            let bit: UInt32 = 1 << UInt32(k.rawValue)
            if seen & bit != 0 { throw envelopeError(keyPos, "duplicate key \"\(k.name)\"") }
            seen |= bit
            switch k {
            case .id: try collectText(&r, k, .id, &text)
            case .type: try collectText(&r, k, .type, &text)
            case .version: try collectText(&r, k, .version, &text)
            case .source: try collectText(&r, k, .source, &text)
            case .target: try collectText(&r, k, .target, &text)
            case .correlationId: try collectText(&r, k, .correlationId, &text)
            case .replyTo: try collectText(&r, k, .replyTo, &text)
            case .contentType:
                let v = makeBytes(try readText(&r, k))
                f.contentType = try EnvelopeFields.contentType(v, at: valuePos)
            case .timestamp:
                f.timestamp = try readInt(&r, k)
            case .ttl:
                f.ttl = try EnvelopeFields.ttl(readInt(&r, k), at: valuePos)
            case .priority:
                f.priority = try EnvelopeFields.priority(readInt(&r, k), at: valuePos)
            case .headers:
                try collectHeaders(&r, k, &text)
            case .metadata:
                guard case .map(let n) = try r.next() else {
                    throw envelopeError(valuePos, "\"metadata\" must be a map")
                }
                if r.maxDepth < 2 { throw r.tooDeep(at: valuePos) }
                var fields: [Field] = []
                for _ in 0..<n {
                    let fk = makeBytes(try r.readStr("a metadata key"))
                    let fpos = r.pos
                    if fk == metaCompressed || fk == metaEncrypted {
                        guard case .bool(let flag) = try r.next() else {
                            throw envelopeError(fpos, "\"metadata.\(String(decoding: fk, as: UTF8.self))\" must be a boolean")
                        }
                        if fk == metaCompressed { f.compressed = flag } else { f.encrypted = flag }
                        fields.append(Field(key: fk, value: .json([])))
                    } else {
                        fields.append(Field(key: fk, value: try readFieldValue(&r)))
                    }
                }
                do { try checkDuplicateKeys(fields, in: "\"metadata\"") } catch { throw envelopeError(valuePos, error.message) }
                f.metadata = fields.filter { $0.key != metaCompressed && $0.key != metaEncrypted }
            case .payload:
                payloadPos = valuePos
                try r.skip(depth: 1)
            }
        }
        if r.pos != bytes.count {
            throw r.fail("\(bytes.count - r.pos) trailing bytes after the envelope map")
        }
        // The checks of EnvelopeFields.checkComplete, in its order.
        if !text.has(.id) { throw OrchestraError(.parse, "invalid envelope: missing required field \"id\"") }
        if !text.has(.type) { throw OrchestraError(.parse, "invalid envelope: missing required field \"type\"") }
        try checkDuplicateKeys(f.extensions, in: "the envelope")
        let compressed = f.compressed, encrypted = f.encrypted, contentType = f.contentType
        var payload: [UInt8]? = nil
        var form = PayloadForm.bytes
        if let start = payloadPos {
            r.pos = start
            if compressed || encrypted || contentType == .binary {
                guard case .bin(let b) = try r.next() else {
                    throw envelopeError(start, compressed || encrypted
                        ? "a compressed or encrypted payload must be bin"
                        : "an application/octet-stream payload must be bin")
                }
                payload = makeBytes(b)
            } else if contentType == .text {
                payload = makeBytes(try r.readStr("a text/plain payload"))
            } else if try r.checkJSONValue(depth: 1) {
                // Kept as it arrived; its JSON text is made when asked for (Message.payload).
                payload = makeBytes(bytes, start, r.pos)
                form = .msgpack
            } else {
                // Checked, but not in our encoder's form (e.g. float32, a wider int or header
                // than needed): kept as JSON text, so that it re-encodes as before.
                r.pos = start
                payload = try r.transcodeToJSON(depth: 1)
            }
        }
        return Message(
            text: MessageText(block: text.makeBlock()), timestamp: f.timestamp, ttl: f.ttl,
            priority: f.priority, payload: payload, payloadForm: form, contentType: contentType,
            compressed: compressed, encrypted: encrypted, metadata: f.metadata, extensions: f.extensions)
    }

    /// A str value for text field `k` into the collector, with the checks of `readText`.
    @inline(__always)
    private static func collectText(_ r: inout MsgPackReader, _ k: EnvelopeKey, _ field: TextField, _ text: inout TextCollector) throws(OrchestraError) {
        let s = try readText(&r, k)
        let from = text.append(s)
        text.setField(field, from, text.count)
    }

    /// The `headers` map into the collector, with the checks of `readFields`: str values are
    /// kept as text, other values as their JSON text.
    private static func collectHeaders(_ r: inout MsgPackReader, _ k: EnvelopeKey, _ text: inout TextCollector) throws(OrchestraError) {
        let at = r.pos
        guard case .map(let n) = try r.next() else {
            throw envelopeError(at, "\"\(k.name)\" must be a map")
        }
        if r.maxDepth < 2 { throw r.tooDeep(at: at) }
        for _ in 0..<n {
            let ks = text.append(try r.readStr("a \(k.name) key"))
            let ke = text.count
            if r.atStr {
                let vs = text.append(try r.readStr("a string value"))
                text.addHeader(ks, ke, vs, text.count, isJSON: false)
            } else {
                let json = try r.transcodeToJSON(depth: 2)
                let vs = json.withUnsafeBytes { text.append($0) }
                text.addHeader(ks, ke, vs, text.count, isJSON: true)
            }
        }
        if let dup = text.firstDuplicateHeaderKey() {
            throw envelopeError(at, "duplicate key \"\(String(decoding: dup, as: UTF8.self))\" in \"\(k.name)\"")
        }
    }

    /// The JSON text of a `.msgpack`-form payload (checked by `checkJSONValue` when it was
    /// decoded, within a depth limit no deeper than the ceiling used here, so this cannot fail).
    static func jsonText(ofCheckedPayload mp: [UInt8]) -> [UInt8] {
        do {
            return try withBytes(mp) { (b) throws(OrchestraError) -> [UInt8] in
                var r = MsgPackReader(b, maxDepth: DecodeLimits.depthCeiling)
                return try r.transcodeToJSON(depth: 0, capacity: b.count + b.count / 8 + 16)
            }
        } catch {
            preconditionFailure("a checked MessagePack payload did not transcode: \(error.message)")
        }
    }

    /// A str value for key `k`, with the checks of a text field (`EnvelopeFields.checkText`).
    @inline(__always)
    private static func readText(_ r: inout MsgPackReader, _ k: EnvelopeKey) throws(OrchestraError) -> UnsafeRawBufferPointer {
        let at = r.pos
        let s = try r.readStr("\"\(k.name)\"")
        try EnvelopeFields.checkText(count: s.count, k, at: at)
        return s
    }

    private static func readInt(_ r: inout MsgPackReader, _ k: EnvelopeKey) throws(OrchestraError) -> Int64 {
        let at = r.pos
        switch try r.next() {
        case .int(let v): return v
        case .uint(let v): throw envelopeError(at, "\"\(k.name)\" \(v) is out of the 64-bit integer range")
        case .float32, .float64: throw envelopeError(at, "\"\(k.name)\" must be an integer, got a float")
        default: throw envelopeError(at, "\"\(k.name)\" must be an integer")
        }
    }

    private static func readFieldValue(_ r: inout MsgPackReader) throws(OrchestraError) -> FieldValue {
        if r.atStr { return .string(makeBytes(try r.readStr("a string value"))) }
        return .json(try r.transcodeToJSON(depth: 2))
    }
}

// MARK: - Headers in MessagePack

extension MsgPackWriter {
    /// A header: its key, then its value (a string, or a JSON value transcoded).
    static func writeHeader(_ h: (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isJSON: Bool), into w: inout ByteWriter) throws(OrchestraError) {
        try writeStr(h.key, into: &w, what: "header key")
        if h.isJSON {
            try jsonToMsgPack(makeBytes(h.value), into: &w, what: "header \"\(String(decoding: h.key, as: UTF8.self))\"")
        } else {
            try writeStr(h.value, into: &w, what: "header \"\(String(decoding: h.key, as: UTF8.self))\"")
        }
    }
}
