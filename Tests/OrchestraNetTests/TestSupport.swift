import Testing
@testable import OrchestraNet

/// A reproducible generator for chunk sizes and random inputs (xorshift64*).
struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 2685821657736338717
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// What the frame decoder reported, reassembled: whole messages, control frames, the end.
enum Got: Equatable, CustomStringConvertible {
    case message(Opcode, compressed: Bool, [UInt8])
    case ping([UInt8])
    case pong([UInt8])
    case close(UInt16?, [UInt8])
    case error(UInt16)

    var description: String {
        switch self {
        case .message(let o, let c, let b): return "message(\(o), compressed: \(c), \(b.count) bytes)"
        case .ping(let b): return "ping(\(b))"
        case .pong(let b): return "pong(\(b))"
        case .close(let c, let r): return "close(\(c.map(String.init) ?? "nil"), \(String(decoding: r, as: UTF8.self)))"
        case .error(let c): return "error(\(c))"
        }
    }
}

/// Feeds `input` to a decoder in chunks of the given sizes (the rest in one last chunk) and
/// collects what it reports, checking the event contract on the way: chunks of one message
/// come in order with isFirst on the first and isLast on the last, `.needMore` only once the
/// chunk is used up.
func decode(_ input: [UInt8], _ config: FrameDecoder.Configuration, chunks: [Int] = []) -> [Got] {
    var d = FrameDecoder(config)
    var out: [Got] = []
    var pending: [UInt8]? = nil
    var pendingOp = Opcode.binary
    var pendingCompressed = false
    var pos = 0
    var sizes = chunks[...]
    while pos < input.count || (input.isEmpty && pos == 0) {
        let n = min(sizes.popFirst() ?? (input.count - pos), input.count - pos)
        var chunk = Array(input[pos..<(pos + n)])
        pos += n
        var stop = false
        chunk.withUnsafeMutableBytes { buf in
            var off = 0
            loop: while true {
                switch d.next(buf, offset: &off) {
                case .needMore:
                    #expect(off == buf.count)
                    break loop
                case .data(let c):
                    #expect(c.isFirst == (pending == nil))
                    if c.isFirst { pending = []; pendingOp = c.opcode; pendingCompressed = c.compressed }
                    #expect(c.opcode == pendingOp && c.compressed == pendingCompressed)
                    pending!.append(contentsOf: c.bytes)
                    if c.isLast {
                        out.append(.message(pendingOp, compressed: pendingCompressed, pending!))
                        pending = nil
                    }
                case .ping(let b): out.append(.ping(Array(b)))
                case .pong(let b): out.append(.pong(Array(b)))
                case .close(let code, let r):
                    out.append(.close(code?.rawValue, Array(r)))
                    stop = true
                    break loop
                case .error(let e):
                    out.append(.error(e.closeCode.rawValue))
                    stop = true
                    break loop
                }
            }
        }
        if stop || input.isEmpty { break }
    }
    return out
}

/// Chunk sizes for feeding one byte at a time.
func byteByByte(_ n: Int) -> [Int] { Array(repeating: 1, count: n) }

/// Random chunk sizes of 1 to `max` bytes covering `n` bytes.
func randomChunks(_ n: Int, max: Int, _ rng: inout TestRNG) -> [Int] {
    var out: [Int] = []
    var left = n
    while left > 0 {
        let c = min(left, 1 + rng.below(max))
        out.append(c)
        left -= c
    }
    return out
}

/// A frame as a peer would send it: header, optional mask (key given), payload.
func rawFrame(_ b0: UInt8, _ payload: [UInt8], mask: [UInt8]? = nil, length: UInt64? = nil, lengthForm: Int? = nil) -> [UInt8] {
    let len = length ?? UInt64(payload.count)
    var out: [UInt8] = [b0]
    let m: UInt8 = mask == nil ? 0 : 0x80
    let form = lengthForm ?? (len < 126 ? 7 : len <= 0xFFFF ? 16 : 64)
    switch form {
    case 7: out.append(m | UInt8(len))
    case 16: out.append(m | 126); out += [UInt8(len >> 8 & 0xFF), UInt8(len & 0xFF)]
    default:
        out.append(m | 127)
        for s in stride(from: 56, through: 0, by: -8) { out.append(UInt8(len >> UInt64(s) & 0xFF)) }
    }
    if let mask {
        out += mask
        out += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    } else {
        out += payload
    }
    return out
}

/// A masked frame (what a client sends) with a fixed key.
func clientFrame(_ b0: UInt8, _ payload: [UInt8]) -> [UInt8] {
    rawFrame(b0, payload, mask: [0x11, 0x9A, 0x3C, 0xE5])
}

var serverConfig: FrameDecoder.Configuration { FrameDecoder.Configuration(role: .server) }
var clientConfig: FrameDecoder.Configuration { FrameDecoder.Configuration(role: .client) }

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
