// The part of @types/node that index.d.ts uses (Debian has no @types/node package; in a
// real project @types/node provides Buffer).
declare class Buffer extends Uint8Array {
  toString(encoding?: string): string;
}

declare module 'node:events' {
  class EventEmitter {
    on(event: string | symbol, listener: (...args: any[]) => void): this;
    once(event: string | symbol, listener: (...args: any[]) => void): this;
    off(event: string | symbol, listener: (...args: any[]) => void): this;
    emit(event: string | symbol, ...args: any[]): boolean;
  }
}

declare class AbortSignal {
  readonly aborted: boolean;
  readonly reason: any;
}
