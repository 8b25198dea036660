/** The ID-block signing key: a P-384 private key from PEM, or a fresh one. */
import { createPrivateKey } from "node:crypto";
import { p384 } from "@noble/curves/nist";

/** A P-384 private key: the scalar and the public point, big-endian 48 bytes each. */
export interface P384Key {
  d: Uint8Array;
  x: Uint8Array;
  y: Uint8Array;
}

/** A key that cannot be used. */
export class KeyError extends Error {
  /** The class name, for messages and logs. */
  override name = "KeyError";
}

function base64UrlToBytes(s: string): Uint8Array {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** Reads a PEM private key (SEC1 "EC PRIVATE KEY" or PKCS#8) and checks it is P-384. */
export function parseP384PrivateKeyPem(pem: string): P384Key {
  let key;
  try {
    key = createPrivateKey({ key: pem, format: "pem" });
  } catch (e) {
    throw new KeyError("not a PEM private key (SEC1 EC PRIVATE KEY or PKCS#8)", { cause: e });
  }
  if (key.asymmetricKeyType !== "ec") {
    throw new KeyError(
      `a ${key.asymmetricKeyType ?? "non-EC"} key; the ID block needs ECDSA P-384`,
    );
  }
  const jwk = key.export({ format: "jwk" }) as { crv?: string; d?: string; x?: string; y?: string };
  if (jwk.crv !== "P-384" || !jwk.d || !jwk.x || !jwk.y) {
    throw new KeyError(`an EC key on ${jwk.crv ?? "an unknown curve"}; the ID block needs P-384`);
  }
  return { d: base64UrlToBytes(jwk.d), x: base64UrlToBytes(jwk.x), y: base64UrlToBytes(jwk.y) };
}

/** A fresh random P-384 key. */
export function generateP384Key(): P384Key {
  const d = p384.utils.randomSecretKey();
  return keyFromScalar(d);
}

/** The key for scalar `d`. */
export function keyFromScalar(d: Uint8Array): P384Key {
  const pub = p384.getPublicKey(d, false); // 04 || x || y
  return { d, x: pub.slice(1, 49), y: pub.slice(49, 97) };
}
