import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { envExample } from '../config.js'

/** `npm run env:example`: writes .env.example from the configuration's schema (src/config.ts). */
const file = join(import.meta.dirname, '..', '..', '.env.example')
writeFileSync(file, envExample())
console.log(`wrote ${file}`)
