/**
 * The 32-bit PVH trampoline of the boot smoke test: entered by QEMU in flat 32-bit protected
 * mode with paging off, it reproduces an IGVM image's VMSA state on a CPU without SEV and
 * jumps to the image's entry point. Hand-assembled x86; each instruction is commented.
 */

/** The VMSA state the trampoline reproduces. */
export interface TrampolineState {
  longMode: boolean;
  gdtBase: number;
  gdtLimit: number;
  codeSelector: number;
  dataSelector: number;
  cr0: number;
  cr3: number; // low 32 bits, C-bit already cleared
  cr4: number;
  efer: number; // without SVME
  rip: number;
  rsi: number;
  rsp: number;
}

class Asm {
  readonly bytes: number[] = [];
  emit(...b: number[]) {
    this.bytes.push(...b);
  }
  u16(v: number) {
    this.emit(v & 0xff, (v >>> 8) & 0xff);
  }
  u32(v: number) {
    this.emit(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }
  u64(v: number) {
    this.u32(v % 0x1_0000_0000);
    this.u32(Math.floor(v / 0x1_0000_0000));
  }
  get here() {
    return this.bytes.length;
  }
}

const GDTR_OFFSET = 0x800; // the 6-byte GDTR operand inside the trampoline page

/** Assembles the trampoline for a page at `base`. */
export function buildTrampoline(base: number, s: TrampolineState): Uint8Array {
  const a = new Asm();
  a.emit(0xfa); // cli
  a.emit(0xb0, 0xff); // mov al, 0xff
  a.emit(0xe6, 0x21); // out 0x21, al   ; mask the master 8259
  a.emit(0xe6, 0xa1); // out 0xa1, al   ; mask the slave 8259
  a.emit(0x0f, 0x01, 0x15); // lgdt [disp32]
  a.u32(base + GDTR_OFFSET);
  if (s.longMode) {
    a.emit(0xb8); // mov eax, imm32
    a.u32(s.cr4);
    a.emit(0x0f, 0x22, 0xe0); // mov cr4, eax
    a.emit(0xb8); // mov eax, imm32
    a.u32(s.cr3);
    a.emit(0x0f, 0x22, 0xd8); // mov cr3, eax
    a.emit(0xb9); // mov ecx, IA32_EFER
    a.u32(0xc000_0080);
    a.emit(0xb8); // mov eax, imm32
    a.u32(s.efer);
    a.emit(0x31, 0xd2); // xor edx, edx
    a.emit(0x0f, 0x30); // wrmsr
    a.emit(0xb8); // mov eax, imm32
    a.u32(s.cr0);
    a.emit(0x0f, 0x22, 0xc0); // mov cr0, eax ; paging on: long mode active
  }
  a.emit(0xea); // ljmp ptr16:32  ; reload CS from the image's GDT
  const target = a.here;
  a.u32(0);
  a.u16(s.codeSelector);
  const next = a.here;
  a.bytes.splice(target, 4, ...[0, 0, 0, 0]);
  const setTarget = (off: number) => {
    const v = base + off;
    a.bytes[target] = v & 0xff;
    a.bytes[target + 1] = (v >>> 8) & 0xff;
    a.bytes[target + 2] = (v >>> 16) & 0xff;
    a.bytes[target + 3] = (v >>> 24) & 0xff;
  };
  setTarget(next);
  a.emit(0x66, 0xb8); // mov ax, imm16
  a.u16(s.dataSelector);
  a.emit(0x8e, 0xd8); // mov ds, ax
  a.emit(0x8e, 0xc0); // mov es, ax
  a.emit(0x8e, 0xd0); // mov ss, ax
  if (s.longMode) {
    a.emit(0x48, 0xbe); // mov rsi, imm64
    a.u64(s.rsi);
    a.emit(0x48, 0xbc); // mov rsp, imm64
    a.u64(s.rsp);
    a.emit(0x48, 0xb8); // mov rax, imm64
    a.u64(s.rip);
    a.emit(0xff, 0xe0); // jmp rax
  } else {
    a.emit(0xbe); // mov esi, imm32
    a.u32(s.rsi);
    a.emit(0xbc); // mov esp, imm32
    a.u32(s.rsp);
    a.emit(0xb8); // mov eax, imm32
    a.u32(s.rip);
    a.emit(0xff, 0xe0); // jmp eax
  }
  const page = new Uint8Array(4096);
  page.set(a.bytes);
  const v = new DataView(page.buffer);
  v.setUint16(GDTR_OFFSET, s.gdtLimit, true);
  v.setUint32(GDTR_OFFSET + 2, s.gdtBase, true);
  return page;
}
