// A correctness check for a new machine: greedy output of the bundled demo model against
// the float64 reference text in models/demo-stories/README.md, with the kernels this
// adapter gets by default and with the other profile. Prints how many characters agree
// (an f16 engine may part from the reference where two next tokens nearly tie).
// Run: node scripts/gpu-machine/demo-check.mjs   (after npm run build)
import { readFileSync } from 'node:fs';
import { Engine } from '../../dist/src/engine/engine.js';

const DIR = 'models/demo-stories';
const readme = readFileSync(`${DIR}/README.md`, 'utf8');
const cases = [...readme.matchAll(/- user "([^"]+)" ->\n\s+`([^`]+)`/g)].map((m) => ({ user: m[1], want: m[2] }));
if (cases.length === 0) throw new Error(`no expected outputs found in ${DIR}/README.md`);

let failed = false;
for (const kernelProfile of ['auto', 'cpu', 'gpu']) {
  for (const forceF32 of [false, true]) {
    const engine = await Engine.load(DIR, { kernelProfile, forceF32, responseCacheEntries: 0 });
    try {
      for (const c of cases) {
        const got = await engine.complete({ prompt: [{ role: 'user', content: c.user }], sampling: { temperature: 0 }, maxTokens: 400 });
        let same = 0;
        while (same < c.want.length && got.text[same] === c.want[same]) same++;
        const exact = got.text === c.want;
        // the default profile in f32 must reproduce the reference exactly
        if (!exact && kernelProfile === 'auto' && forceF32) failed = true;
        console.log(
          `${engine.adapterName} | profile ${kernelProfile} | ${forceF32 ? 'f32' : 'f16 where available'} | "${c.user}": ` +
            (exact ? 'exact' : `first ${same} of ${c.want.length} characters agree`),
        );
      }
    } finally {
      await engine.close();
    }
  }
}
process.exitCode = failed ? 1 : 0;
