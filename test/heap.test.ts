import { spawnSync } from 'node:child_process'
import tap from 'tap'
import { heapFlag, HEAP_GROWING_PERCENT } from '../src/heap.js'

// The boot's one V8 setting (src/heap.ts): what it sets, and that an operator's own flag wins.

tap.test('the old generation grows to 2.5 times its survivors unless node was given its own flag', async t => {
  t.equal(heapFlag([]), `--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
  t.equal(heapFlag(['--enable-source-maps', '--max-old-space-size=512']), `--heap-growing-percent=${HEAP_GROWING_PERCENT}`, 'other flags: set')
  t.equal(heapFlag(['--heap-growing-percent=0']), undefined, "the operator's value kept (0: V8's own choice)")
  t.equal(heapFlag(['--heap_growing_percent=300']), undefined, 'V8 spells its flags with either separator')
  t.equal(heapFlag(['--heap-growing-percent', '80']), undefined, 'value as the next argument')
  t.equal(heapFlag(['--heap-growing-percentage=5']), `--heap-growing-percent=${HEAP_GROWING_PERCENT}`, 'not a prefix match')
})

tap.test('this V8 knows the flag', async t => {
  // setFlagsFromString ignores what it does not know, silently: an unknown flag name would pass the
  // test above and do nothing. V8 lists the flags it knows.
  const { stdout } = spawnSync(process.execPath, ['--v8-options'], { encoding: 'utf8' })
  t.match(stdout, /--heap-growing-percent \(/, 'a flag this V8 has')
})
