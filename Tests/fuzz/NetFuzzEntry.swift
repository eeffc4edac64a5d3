// Fuzz-only entry points into OrchestraNet's parsers. Tests/fuzz/build.sh compiles this file
// into the OrchestraNet module of the instrumented build only: these symbols are never part
// of liborchestra.so. Each entry checks properties, not just "no crash", and traps (which
// libFuzzer reports as a crash) when one breaks.

/// Decodes `data` as a WebSocket byte stream twice: in one piece and in pieces cut where the
/// input says, and requires the same events. The first byte picks the configuration (role,
/// permessage-deflate, small limits). Complete uncompressed text messages must be valid UTF-8,
/// no message may exceed the limit, and every chunk must lie inside the input.
@_cdecl("orc_fuzz_ws_frames")
public func orcFuzzWSFrames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    let sel = data[0]
    var config = FrameDecoder.Configuration(role: sel & 1 == 0 ? .server : .client)
    config.perMessageDeflate = sel & 2 != 0
    config.validateUTF8 = sel & 4 == 0
    config.maxFrameSize = sel & 8 != 0 ? 64 : 1 << 20
    config.maxMessageSize = sel & 16 != 0 ? 100 : 1 << 20
    let input = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let whole = fuzzDecode(input, config, cut: nil)
    let split = fuzzDecode(input, config, cut: Int(sel >> 5) + 1)
    precondition(whole == split, "split decoding differs")
    for e in whole {
        if case .message(let op, let compressed, let bytes) = e {
            precondition(bytes.count <= config.maxMessageSize, "message over the limit")
            if op == .text && !compressed && config.validateUTF8 {
                precondition(String(validating: bytes, as: UTF8.self) != nil, "invalid UTF-8 accepted")
            }
        }
    }
    return 0
}

enum FuzzEvent: Equatable {
    case message(Opcode, Bool, [UInt8])
    case control(Opcode, [UInt8])
    case close(UInt16?, [UInt8])
    case error(UInt16)
}

/// Feeds `input` in one piece (cut nil) or in pieces of `cut`, `2*cut`, `3*cut`... bytes.
func fuzzDecode(_ input: [UInt8], _ config: FrameDecoder.Configuration, cut: Int?) -> [FuzzEvent] {
    var d = FrameDecoder(config)
    var out: [FuzzEvent] = []
    var msg: [UInt8] = []
    var pos = 0
    var step = cut ?? input.count
    repeat {
        let n = min(step, input.count - pos)
        var chunk = Array(input[pos..<(pos + n)])
        pos += n
        if let c = cut { step += c }
        var stop = false
        chunk.withUnsafeMutableBytes { buf in
            var off = 0
            while !stop {
                let ev = d.next(buf, offset: &off)
                switch ev {
                case .needMore:
                    precondition(off == buf.count, "needMore before the end of the input")
                    return
                case .data(let c):
                    if c.bytes.count > 0 {
                        let lo = UnsafeRawPointer(buf.baseAddress!), hi = lo + buf.count
                        precondition(c.bytes.baseAddress! >= lo && c.bytes.baseAddress! + c.bytes.count <= hi, "chunk outside the input")
                    }
                    if c.isFirst { msg = [] }
                    msg += c.bytes
                    if c.isLast { out.append(.message(c.opcode, c.compressed, msg)) }
                case .ping(let b): out.append(.control(.ping, Array(b)))
                case .pong(let b): out.append(.control(.pong, Array(b)))
                case .close(let code, let r): out.append(.close(code?.rawValue, Array(r))); stop = true
                case .error(let e): out.append(.error(e.closeCode.rawValue)); stop = true
                }
            }
        }
        if stop { break }
    } while pos < input.count
    return out
}

/// Parses `data` as a request head in one piece and byte by byte (same outcome required); an
/// accepted upgrade must yield a 101 response that parses and that a client would accept. The
/// same bytes are also parsed as a response head and checked as a handshake answer.
@_cdecl("orc_fuzz_http_head")
public func orcFuzzHTTPHead(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    let input = UnsafeRawBufferPointer(start: data, count: size)
    var a = HTTPRequestParser()
    let r1 = a.feed(input)
    var b = HTTPRequestParser()
    var r2 = HTTPParseResult.needMore
    var used = 0
    for i in 0..<size {
        r2 = b.feed(UnsafeRawBufferPointer(rebasing: input[i..<(i + 1)]))
        if case .needMore = r2 { continue }
        used = i
        break
    }
    switch (r1, r2) {
    case (.needMore, .needMore): break
    case (.error(let x), .error(let y)): precondition(x.status == y.status, "split parsing differs")
    case (.done(let x), .done(let y)):
        precondition(y == 1 && x == used + 1, "consumed counts differ")
        precondition(a.head.headers.count == b.head.headers.count && a.head.target == b.head.target, "heads differ")
        var config = ServerHandshake.Configuration()
        config.subprotocols = ["chat", "v1"]
        config.perMessageDeflate = PerMessageDeflate.Configuration()
        if case .success(let ok) = ServerHandshake.accept(a.head, config) {
            var rp = HTTPResponseParser()
            guard case .done = rp.feed(ok.response()) else { preconditionFailure("our 101 does not parse") }
            let key = a.head.headers.first("sec-websocket-key")!
            precondition(rp.head.headers.string("sec-websocket-accept") == ServerHandshake.acceptValue(forKey: key), "accept value")
        }
    default: preconditionFailure("split parsing differs: \(r1) vs \(r2)")
    }
    var rp = HTTPResponseParser()
    if case .done = rp.feed(input), let c = try? ClientHandshake(host: "h", target: "/") {
        _ = c.validate(rp.head)
        if case .success(let elements) = ExtensionElement.parseAll(rp.head.headers) {
            _ = PerMessageDeflate.negotiate(offers: elements, PerMessageDeflate.Configuration())
            for e in elements { _ = PerMessageDeflate.accept(response: e, offered: PerMessageDeflate.Configuration()) }
        }
    }
    return 0
}

/// Inflates `data` as one permessage-deflate message, in one piece and in pieces cut where the
/// first byte says, with a 64 KiB limit: both must give the same outcome (the same bytes, or an
/// error with the same close code), the output never passes the limit, and a message our own
/// deflater made from the output inflates back to it.
@_cdecl("orc_fuzz_inflate")
public func orcFuzzInflate(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    let cut = Int(data[0]) + 1
    let input = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let limit = 64 << 10
    func run(_ step: Int) -> Result<[UInt8], WebSocketError> {
        guard let inf = try? MessageInflater(windowBits: 15, noContextTakeover: true, maxMessageSize: limit) else {
            preconditionFailure("inflater setup")
        }
        var out: [UInt8] = []
        var at = 0
        repeat {
            let n = min(step, input.count - at)
            do {
                try inf.inflate(UnsafeRawBufferPointer(rebasing: input[at..<(at + n)]), final: at + n == input.count, into: &out)
            } catch {
                return .failure(error)
            }
            at += n
        } while at < input.count
        return .success(out)
    }
    let whole = run(max(input.count, 1))
    let split = run(cut)
    switch (whole, split) {
    case (.success(let a), .success(let b)):
        precondition(a == b, "split inflation differs")
        precondition(a.count <= limit, "output over the limit")
        guard let def = try? MessageDeflater(windowBits: 15, noContextTakeover: true) else { preconditionFailure("deflater setup") }
        var wire: [UInt8] = []
        a.withUnsafeBytes { try? def.compress($0, into: &wire) }
        guard let inf = try? MessageInflater(windowBits: 15, noContextTakeover: true, maxMessageSize: limit) else { preconditionFailure() }
        var back: [UInt8] = []
        wire.withUnsafeBytes { try? inf.inflate($0, final: true, into: &back) }
        precondition(back == a, "deflate round trip differs")
    case (.failure(let a), .failure(let b)):
        // Where a corrupt stream is detected may depend on the cut, but not the kind of error.
        precondition(a.closeCode == b.closeCode || a.closeCode == .messageTooBig || b.closeCode == .messageTooBig,
                     "different errors: \(a) / \(b)")
    default:
        // Corrupt data can be noticed in one piece but hidden in a split, or the reverse, only
        // through the limit; anything else is a bug.
        let e: WebSocketError
        switch (whole, split) {
        case (.failure(let x), _): e = x
        case (_, .failure(let x)): e = x
        default: preconditionFailure()
        }
        precondition(e.closeCode == .messageTooBig, "only one of the runs failed: \(e)")
    }
    return 0
}
