/** `-d`: the original igvmgen's text dump of a file. */
import { InputError } from "../errors.ts";
import { dumpIgvm } from "../igvm/dump.ts";
import { inputName, withInputAccess } from "../io/input_source.ts";
import { checkFields, FILE_FIELDS, type IgvmFileRequest } from "./igvm_file.ts";

/** The original igvmgen's text dump (`-d`) of a file. */
export async function dumpIgvmFileText(request: IgvmFileRequest): Promise<string> {
  checkFields("dump", request, FILE_FIELDS);
  const name = inputName(request.file);
  try {
    return await withInputAccess(
      request.file,
      "IGVM file",
      (file) => dumpIgvm((offset, length) => file.readAt(offset, length), file.size),
      true,
    );
  } catch (e) {
    throw new InputError(`cannot dump ${name}: ${(e as Error).message}`, { cause: e });
  }
}
