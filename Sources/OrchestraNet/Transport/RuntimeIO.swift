import CUV
import Glibc
import OrchestraCore

/// Size of the read buffer every connection of a runtime shares. libuv asks for a buffer right
/// before each read and the read callback consumes it whole (the frame decoder unmasks in
/// place and hands out slices; a message split across reads is copied into its connection's
/// assembly buffer), so one buffer per I/O thread serves every connection: an idle
/// connection owns no read buffer.
let sharedReadBufferSize = 64 * 1024

extension Runtime {
    /// On the I/O thread: the shared read buffer.
    func sharedReadBuffer() -> UnsafeMutableRawPointer {
        if let b = readBuffer { return b }
        let b = UnsafeMutableRawPointer.allocate(byteCount: sharedReadBufferSize, alignment: 16)
        readBuffer = b
        return b
    }

    /// On the I/O thread: room for `count` uv_buf_t, shared by every connection (a writev
    /// descriptor list lives only for the call; uv_write copies it).
    func writeBuffers(_ count: Int) -> UnsafeMutablePointer<uv_buf_t> {
        if writeBufsCapacity < count {
            writeBufs?.deallocate()
            writeBufsCapacity = Swift.max(count, 64)
            writeBufs = .allocate(capacity: writeBufsCapacity)
        }
        return writeBufs!
    }

    /// On the I/O thread: `c` has frames to write; they go out in one writev per connection
    /// after this loop turn's I/O callbacks (a `uv_check_t` runs right after the poll phase).
    func markDirty(_ c: Connection) {
        if check == nil {
            let h = UnsafeMutablePointer<uv_check_t>.allocate(capacity: 1)
            uv_check_init(loop, h)
            h.pointee.data = Unmanaged.passUnretained(self).toOpaque()
            uv_check_start(h) { h in
                guard let data = h?.pointee.data else { return }
                Unmanaged<Runtime>.fromOpaque(data).takeUnretainedValue().flushDirty()
            }
            // The check handle alone must not keep the loop alive.
            uv_unref(UnsafeMutableRawPointer(h).assumingMemoryBound(to: uv_handle_t.self))
            check = h
        }
        dirty.append(c)
    }

    func flushDirty() {
        while !dirty.isEmpty {
            let list = dirty
            dirty.removeAll(keepingCapacity: true)
            for c in list { c.flush() }
        }
    }

    /// On the I/O thread: registers an endpoint's hard-close action for shutdown (servers,
    /// clients, the hub's PostgreSQL connections).
    package func addEndpoint(_ id: ObjectIdentifier, close: @escaping () -> Void) {
        endpoints[id] = close
    }

    package func removeEndpoint(_ id: ObjectIdentifier) {
        endpoints.removeValue(forKey: id)
    }

    /// On the I/O thread at shutdown: closes every endpoint's handles and the check handle.
    func closeTransport() {
        let all = endpoints
        endpoints.removeAll()
        for (_, close) in all { close() }
        flushDirty()
        if let h = check {
            check = nil
            uv_close(UnsafeMutableRawPointer(h).assumingMemoryBound(to: uv_handle_t.self)) { hh in
                UnsafeMutableRawPointer(hh!).assumingMemoryBound(to: uv_check_t.self).deallocate()
            }
        }
    }

    /// Runs `body` on the I/O thread: at once when called there, else posted.
    package func onIOThread(_ body: @escaping () -> Void) throws(OrchestraError) {
        if isIOThread { body() } else { try post(body) }
    }
}
