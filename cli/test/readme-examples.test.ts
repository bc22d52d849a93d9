/**
 * Every command line the READMEs show is one the CLI takes: each `bertq …` (and `npx bertq …`,
 * `bert-serving-* …`) line of a shell block in README.md and cli/README.md is parsed by the command's
 * own flag and argument definitions, so a renamed flag or a wrong value fails here, not in a user's
 * terminal. (test/cli-readme.nats.test.ts runs the "A session" block for real, against a fleet.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { Parser } from '@oclif/core';
import { joinListFlags, translateBertServingArgs } from '../src/compat.js';
import AuthInit from '../src/commands/auth/init.js';
import Benchmark from '../src/commands/benchmark.js';
import Encode from '../src/commands/encode.js';
import Gateway from '../src/commands/gateway.js';
import Start from '../src/commands/start.js';
import Status from '../src/commands/status.js';
import Terminate from '../src/commands/terminate.js';

const ROOT = new URL('../../../', import.meta.url);

// Command classes differ in their flag types; the parser takes any.
const COMMANDS: Record<string, any> = {
  start: Start,
  encode: Encode,
  status: Status,
  terminate: Terminate,
  gateway: Gateway,
  benchmark: Benchmark,
  'auth init': AuthInit,
};
const SERVING: Record<string, string> = {
  'bert-serving-start': 'start',
  'bert-serving-terminate': 'terminate',
  'bert-serving-benchmark': 'benchmark',
};

/** The shell words of a line: quotes kept together, a trailing `# comment` and pipes before it dropped. */
function words(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) {
    const word = m[1] ?? m[2] ?? m[3]!;
    if (m[3]?.startsWith('#')) break;
    out.push(word);
  }
  return out;
}

/** Every bertq command line in the shell blocks of a markdown file. */
function commandLines(file: string): string[] {
  const text = readFileSync(new URL(file, ROOT), 'utf8');
  const blocks = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks
    .flatMap((b) => b.split('\n'))
    .map((l) => l.replace(/^.*\|\s*/, '').trim()) // `printf … | bertq encode` → `bertq encode`
    .map((l) => l.replace(/^npx /, ''))
    .filter((l) => /^(bertq|bert-serving-\w+) /.test(l));
}

test('readme examples - every bertq command line in README.md and cli/README.md parses with its command', async () => {
  const lines = [...commandLines('README.md'), ...commandLines('cli/README.md')];
  assert.ok(lines.length >= 15, `found ${lines.length} command lines`);
  const seen = new Set<string>();
  for (const line of lines) {
    const [bin, ...rest] = words(line);
    let name: string;
    let argv: string[];
    if (bin === 'bertq') {
      name = rest[0] === 'auth' ? `auth ${rest[1]}` : rest[0]!;
      argv = joinListFlags(rest.slice(name.split(' ').length));
    } else {
      name = SERVING[bin!]!;
      argv = translateBertServingArgs(rest, name as 'start' | 'terminate' | 'benchmark').args;
    }
    const Command = COMMANDS[name];
    assert.ok(Command, `${line}: no command ${name}`);
    seen.add(name);
    await assert.doesNotReject(
      Parser.parse(argv, {
        flags: { ...Command.baseFlags, ...Command.flags },
        args: Command.args ?? {},
        strict: Command.strict ?? true,
      }),
      `${line}`,
    );
  }
  for (const name of ['start', 'encode', 'status', 'terminate', 'benchmark'])
    assert.ok(seen.has(name), `the READMEs show bertq ${name}`);
});

test('readme examples - the check itself refuses a flag that does not exist', async () => {
  await assert.rejects(
    Parser.parse(['--model-dri', 'x'], { flags: { ...Start.baseFlags, ...Start.flags }, strict: true }),
  );
});

const SEED_README = new URL('../../../../shared/reference/bert-as-service-README.txt', import.meta.url);

test("readme examples - every server flag in bert-as-service's README is taken by bert-serving-start (or dropped with a note)", {
  skip: existsSync(SEED_README) ? false : 'needs ../shared/reference/bert-as-service-README.txt',
}, async () => {
  const text = readFileSync(SEED_README, 'utf8');
  const table = text.split('Argument Type Default Description\n')[1]!.split('\n\n')[0]!;
  const flags = table
    .split('\n')
    .map((l) => /^(\w+) (str|int|bool|list|float) /.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ name: m[1]!, type: m[2]! }));
  assert.ok(flags.length >= 20, `read ${flags.length} flags from the seed's table`);
  const sample: Record<string, string[]> = { str: ['x'], int: ['8'], float: ['0.5'], bool: [], list: ['-1', '-2'] };
  const values: Record<string, string[]> = { pooling_strategy: ['CLS_TOKEN'], device_map: ['0', '1'] };
  for (const { name, type } of flags) {
    const argv = [
      ...(name === 'model_dir' ? [] : ['-model_dir', '/m']),
      `-${name}`,
      ...(values[name] ?? sample[type]!),
    ];
    const { args, notes } = translateBertServingArgs(argv);
    if (notes.some((n) => n.startsWith(`-${name} is ignored`))) continue;
    await assert.doesNotReject(
      Parser.parse(args, { flags: { ...Start.baseFlags, ...Start.flags }, args: Start.args ?? {}, strict: true }),
      `bert-serving-start ${argv.join(' ')} → bertq start ${args.join(' ')}`,
    );
  }
});
