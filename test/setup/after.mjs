// tap's `after`: stops the run's shared embedded PostgreSQL, if test/setup/before.mjs started one.
import { stopShared } from './state.mjs'

await stopShared()
