import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface Block {
  file: string;
  line: number;
  heading: string;
  lang: string;
  code: string;
}

/** The fenced blocks of a Markdown file (path from the repository root), with the heading they sit under (indented fences in lists included). */
export function blocks(file: string): Block[] {
  const lines = readFileSync(`${root}/${file}`, 'utf8').split('\n');
  const found: Block[] = [];
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const title = /^#+ (.*)$/.exec(line);
    if (title) heading = title[1] as string;
    const open = /^(\s*)```(\S*)\s*$/.exec(line);
    if (!open) continue;
    const indent = (open[1] as string).length;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i] as string); i++) {
      body.push((lines[i] as string).slice(indent));
    }
    found.push({ file, line: start + 1, heading, lang: open[2] as string, code: body.join('\n') + '\n' });
  }
  return found;
}
