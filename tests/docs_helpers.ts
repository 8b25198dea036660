/** Reading the docs' fenced blocks, and copying the tree as a clone has it (docs and install tests). */
import { ROOT } from "./helpers.ts";

/** A fenced block of a Markdown page. */
export interface Block {
  page: string;
  line: number;
  info: string;
  text: string;
}

/** The pages users read, as paths relative to the repository root. */
export function docPages(root = ROOT): string[] {
  const docs = [...Deno.readDirSync(`${root}docs`)]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => `docs/${e.name}`)
    .sort();
  return ["README.md", ...docs];
}

/** The fenced blocks of a page, indented ones (in a list) too, with their indent removed. */
export function fencedBlocks(page: string, markdown: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)(```+)(.*)$/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, info] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !lines[j].startsWith(`${indent}${fence}`); j++) {
      body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j]);
    }
    if (j === lines.length) throw new Error(`${page}:${i + 1}: a fence that is never closed`);
    blocks.push({ page, line: i + 1, info: info.trim(), text: body.join("\n") + "\n" });
    i = j;
  }
  return blocks;
}

/** The files git tracks (and new files it does not ignore): what a clone of this tree holds. */
export async function trackedFiles(root = ROOT): Promise<string[]> {
  const out = await new Deno.Command("git", {
    args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd: root,
    stdout: "piped",
  }).output();
  if (!out.success) throw new Error("git ls-files failed");
  return new TextDecoder().decode(out.stdout).split("\0").filter((f) => {
    if (!f) return false;
    try {
      return Deno.statSync(`${root}${f}`).isFile; // a file deleted but not yet staged is gone
    } catch {
      return false;
    }
  });
}

/** Copies the files git tracks into `dir`, as a clone of this tree. */
export async function copyTree(dir: string, root = ROOT): Promise<void> {
  for (const f of await trackedFiles(root)) {
    const to = `${dir}/${f}`;
    Deno.mkdirSync(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    Deno.copyFileSync(`${root}${f}`, to);
  }
}
