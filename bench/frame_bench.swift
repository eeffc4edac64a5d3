// frame_bench: the WebSocket frame decoder alone (OrchestraNet, sans-I/O), for callgrind and
// quick timings while the network layer is built; not part of bench/run (no anchor yet: the
// end-to-end benchmarks of issue 3 compare whole servers). It encodes `count` frames of `size`
// payload bytes into one buffer, then decodes it in reads of `chunk` bytes (payloads unmasked
// in place, text validated as UTF-8) and prints ns per frame and MB/s of payload.
//
//   build/frame_bench SIZE COUNT CHUNK masked|unmasked text|binary
//   valgrind --tool=callgrind --callgrind-out-file=cg.out build/frame_bench 64 20000 16384 masked text
//   callgrind_annotate --inclusive=yes cg.out | grep FrameDecoderV4next   # instructions / COUNT
import Glibc
import OrchestraNet

func decodeAll(_ stream: inout [UInt8], role: WebSocketRole, chunk: Int) -> (messages: Int, bytes: Int) {
    var decoder = FrameDecoder(FrameDecoder.Configuration(role: role))
    var messages = 0, bytes = 0
    stream.withUnsafeMutableBytes { all in
        var pos = 0
        while pos < all.count {
            let n = min(chunk, all.count - pos)
            let read = UnsafeMutableRawBufferPointer(rebasing: all[pos..<(pos + n)])
            var offset = 0
            loop: while true {
                switch decoder.next(read, offset: &offset) {
                case .needMore: break loop
                case .data(let c):
                    bytes += c.bytes.count
                    if c.isLast { messages += 1 }
                default: fatalError("unexpected event")
                }
            }
            pos += n
        }
    }
    return (messages, bytes)
}

let args = CommandLine.arguments
guard args.count == 6, let size = Int(args[1]), let count = Int(args[2]), let chunk = Int(args[3]), chunk > 0 else {
    print("usage: frame_bench SIZE COUNT CHUNK masked|unmasked text|binary")
    exit(2)
}
let masked = args[4] == "masked", text = args[5] == "text"
// Masked frames are what a server reads (from clients); unmasked what a client reads.
var encoder = FrameEncoder(role: masked ? .client : .server)
let payload = [UInt8](repeating: UInt8(ascii: "a"), count: size)
var stream: [UInt8] = []
stream.reserveCapacity((size + FrameEncoder.maxHeaderSize) * count)
for _ in 0..<count { stream += encoder.frame(text ? .text : .binary, payload) }

var t0 = timespec(), t1 = timespec()
clock_gettime(CLOCK_MONOTONIC, &t0)
let (messages, bytes) = decodeAll(&stream, role: masked ? .server : .client, chunk: chunk)
clock_gettime(CLOCK_MONOTONIC, &t1)
precondition(messages == count && bytes == size * count, "decoded \(messages) messages, \(bytes) bytes")
let ns = Double(t1.tv_sec - t0.tv_sec) * 1e9 + Double(t1.tv_nsec - t0.tv_nsec)
print("\(count) frames x \(size) B (\(args[4]) \(args[5]), reads of \(chunk) B): \(Int(ns / Double(count))) ns/frame, \(Int(Double(bytes) / ns * 1000)) MB/s")
