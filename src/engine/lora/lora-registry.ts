/**
 * Which LoRA adapter is in which device slot, and how many admitted requests use each, so
 * that adapters can be loaded and unloaded while the engine serves: a name unloaded while
 * requests on it are still queued or running leaves their slot alone until the last of them
 * is released, and only then can another adapter be written there. Every load gets a new
 * id, which the prefix and response caches key on: an adapter reloaded under the same name
 * never meets the KV or answers of the one before.
 */
import { AutoGlmError } from '../../errors.js';

type Slot = { state: 'loading'; name: string } | { state: 'loaded' | 'retiring'; name: string; id: number; refs: number } | null;

/** A second load of a name (the gateway answers its own the same way, and reads a worker's by its words). */
export function loraAlreadyLoaded(name: string): AutoGlmError {
  return new AutoGlmError('invalid_request', `A LoRA adapter named ${JSON.stringify(name)} is already loaded; unload it first.`, {
    param: 'lora_name',
  });
}

export interface LoraHandle {
  slot: number;
  name: string;
  id: number;
}

export class LoraRegistry {
  private readonly slots: Slot[];
  private readonly byName = new Map<string, number>();
  private nextId = 1;

  constructor(capacity: number) {
    this.slots = Array.from({ length: capacity }, () => null);
  }

  get capacity(): number {
    return this.slots.length;
  }

  /** The adapters requests may name now, in slot order. */
  get names(): string[] {
    return this.slots.flatMap((s) => (s?.state === 'loaded' ? [s.name] : []));
  }

  /** The adapter a request names, or null when no adapter of that name is loaded. */
  find(name: string): LoraHandle | null {
    const slot = this.byName.get(name);
    const s = slot === undefined ? null : this.slots[slot]!;
    return s?.state === 'loaded' ? { slot: slot!, name, id: s.id } : null;
  }

  /** Counts a request on the adapter (admitted); release() undoes it when the request ends. */
  acquire(h: LoraHandle): void {
    const s = this.slots[h.slot];
    if (s?.state !== 'loaded' || s.id !== h.id) throw new Error(`LoRA slot ${h.slot} no longer holds ${h.name}`);
    s.refs++;
  }

  release(slot: number): void {
    const s = this.slots[slot];
    if (!s || s.state === 'loading') return;
    s.refs--;
    if (s.state === 'retiring' && s.refs <= 0) this.slots[slot] = null;
  }

  /** Claims a free slot for `name` while its files are read and written to the device. */
  reserve(name: string): number {
    if (this.byName.has(name)) throw loraAlreadyLoaded(name);
    const slot = this.slots.indexOf(null);
    if (slot < 0) {
      const retiring = this.slots.filter((s) => s?.state === 'retiring').length;
      throw new AutoGlmError(
        'invalid_request',
        `All ${this.capacity} LoRA slots are in use (maxLoras)${retiring ? `, ${retiring} of them by unloaded adapters whose last requests are still running` : ''}: unload an adapter first.`,
        { param: 'lora_name' },
      );
    }
    this.slots[slot] = { state: 'loading', name };
    this.byName.set(name, slot);
    return slot;
  }

  /** The reserved slot now holds the adapter. */
  commit(slot: number): void {
    const s = this.slots[slot];
    if (s?.state !== 'loading') throw new Error(`LoRA slot ${slot} was not reserved`);
    this.slots[slot] = { state: 'loaded', name: s.name, id: this.nextId++, refs: 0 };
  }

  /** The reserved slot's load failed: free again. */
  abort(slot: number): void {
    const s = this.slots[slot];
    if (s?.state !== 'loading') return;
    this.byName.delete(s.name);
    this.slots[slot] = null;
  }

  /** Unloads a name: new requests cannot name it; its slot frees once its last request is released. False if no such adapter is loaded. */
  retire(name: string): boolean {
    const slot = this.byName.get(name);
    const s = slot === undefined ? null : this.slots[slot]!;
    if (s?.state !== 'loaded') return false;
    this.byName.delete(name);
    if (s.refs <= 0) this.slots[slot!] = null;
    else this.slots[slot!] = { ...s, state: 'retiring' };
    return true;
  }
}
