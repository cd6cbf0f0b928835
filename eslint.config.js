import neostandard from 'neostandard'

// npm run lint: neostandard (the successor of standard, as fastify's own repositories use it), with
// TypeScript; run by npm test and CI.
export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'coverage/**', '.tap/**', 'node_modules/**'] })
]
