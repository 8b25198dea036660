/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, as zlib's crc32), the checksum of the
 * IGVM header section. A 1 KiB table built once; no Node-compatibility module is loaded.
 */

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb8_8320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC-32 of `bytes`, an unsigned 32-bit number; `previous` continues an earlier CRC. */
export function crc32(bytes: Uint8Array, previous = 0): number {
  let c = ~previous;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
