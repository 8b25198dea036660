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
 * with `signIdBlock` when that is not the writer's (hyperv) digest.
 */
export async function signForLoader(
  file: FileAccess,
  sink: SignSink,
  loader: string | undefined,
  writtenDigest: Uint8Array,
  hasGuestInvalidPages: boolean,
  signIdBlock: (digest: Uint8Array) => Promise<Uint8Array>,
  policy: bigint,
  notice?: (message: string) => void,
): Promise<Uint8Array> {
  const name = loader ?? DEFAULT_LOADER;
  const warning = policyWarning(name, policy);
  if (warning) notice?.(warning);
  if (name === DEFAULT_LOADER && !hasGuestInvalidPages) return writtenDigest;
  {
    const headers = await readHeaders(file);
    if (hasGuestInvalidPages) {
      const chMshv = await loaderDigest("ch-mshv", file, headers);
      if (toHex(chMshv) !== toHex(writtenDigest)) {
        notice?.(
          `the image has shared (guest-invalid) pages, so the launch digest depends on the loader: hyperv ${
            toHex(writtenDigest)
          }, ch-mshv ${toHex(chMshv)}; the ID block is signed for ${name} (see --loader)`,
        );
      }
    }
    if (name === DEFAULT_LOADER) return writtenDigest;
    const digest = await loaderDigest(name, file, headers);
    await rewriteIdBlockInPlace(file, headers, await signIdBlock(digest), sink);
    return digest;
  }
}
