// A node:test reporter that writes one JSON object when the run ends: counts of passed, failed and
// skipped tests, and each skipped or failed test with its file and reason. run-tests.mjs reads it to
// print one summary over both suites and to refuse, under CI, skips for things CI must provide.
// Suites (describe blocks) are not counted: their tests are.
import { relative } from 'node:path';

export default async function* summaryReporter(source) {
  const summary = { passed: 0, failed: 0, skipped: 0, todo: 0, skips: [], failures: [] };
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { data } = event;
    if (data.details?.type === 'suite') continue;
    const where = { name: data.name, file: data.file ? relative(process.cwd(), data.file) : undefined };
    if (data.skip !== undefined && data.skip !== false) {
      summary.skipped += 1;
      summary.skips.push({ ...where, reason: typeof data.skip === 'string' ? data.skip : '(no reason given)' });
    } else if (data.todo !== undefined && data.todo !== false) {
      summary.todo += 1;
    } else if (event.type === 'test:pass') {
      summary.passed += 1;
    } else {
      summary.failed += 1;
      const err = data.details?.error;
      summary.failures.push({ ...where, error: String(err?.cause?.message ?? err?.message ?? err).split('\n')[0] });
    }
  }
  yield `${JSON.stringify(summary)}\n`;
}
