/**
 * Generation under a loader model (`--loader`): the writer signs the ID block over the
 * hyperv digest while it streams; for another loader the finished temporary file is
 * measured again under that model and its ID block re-signed in place. For images with
 * guest-invalid (shared) pages the hyperv and ch-mshv digests differ, and a notice names both.
 */
import { toHex } from "../bytes/le.ts";
import { readHeaders } from "../igvm/structure.ts";
import type { FileAccess } from "../io/file_reader.ts";
import { rewriteIdBlockInPlace } from "./id_block_file.ts";
import { DEFAULT_LOADER, loaderDigest, policyWarning } from "./loaders.ts";
import type { SignSink } from "./id_block_file.ts";

/**
 * Returns the launch digest of the written file under `loader`, re-signing its ID block
 * with `signIdBlock` when that is not the writer's (hyperv) digest. Generation calls it for
 * a loader other than hyperv, or for an image with shared pages.
 */
export async function signForLoader(
  file: FileAccess,
  sink: SignSink,
  loader: string,
  writtenDigest: Uint8Array,
  hasGuestInvalidPages: boolean,
  signIdBlock: (digest: Uint8Array) => Promise<Uint8Array>,
  policy: bigint,
  notice?: (message: string) => void,
): Promise<Uint8Array> {
  const warning = policyWarning(loader, policy);
  if (warning) notice?.(warning);
  const headers = await readHeaders(file);
  if (hasGuestInvalidPages) {
    const chMshv = await loaderDigest("ch-mshv", file, headers);
    if (toHex(chMshv) !== toHex(writtenDigest)) {
      notice?.(
        `the image has shared (guest-invalid) pages, so the launch digest depends on the loader: hyperv ${
          toHex(writtenDigest)
        }, ch-mshv ${toHex(chMshv)}; the ID block is signed for ${loader} (see --loader)`,
      );
    }
  }
  if (loader === DEFAULT_LOADER) return writtenDigest;
  const digest = await loaderDigest(loader, file, headers);
  await rewriteIdBlockInPlace(file, headers, await signIdBlock(digest), sink);
  return digest;
}
