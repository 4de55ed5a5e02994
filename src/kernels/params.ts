/**
 * Builds a kernel's uniform params struct. Fields are 4 bytes each, written in the order
 * the WGSL struct declares them (u32, i32 or f32; no vec3 padding rules needed).
 */
export class Params {
  private readonly view: DataView;
  private words = 0;

  constructor(readonly bytes: ArrayBuffer = new ArrayBuffer(256)) {
    this.view = new DataView(bytes);
  }

  u32(v: number): this {
    this.view.setUint32(4 * this.words++, v >>> 0, true);
    return this;
  }

  i32(v: number): this {
    this.view.setInt32(4 * this.words++, v | 0, true);
    return this;
  }

  f32(v: number): this {
    this.view.setFloat32(4 * this.words++, v, true);
    return this;
  }

  get byteLength(): number {
    // WGSL uniform structs are 16-byte aligned in size
    return Math.max(16, Math.ceil((4 * this.words) / 16) * 16);
  }
}

export function params(): Params {
  return new Params();
}
