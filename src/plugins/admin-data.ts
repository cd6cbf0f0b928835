import fp from 'fastify-plugin'
import { adminRepository, type AdminRepository } from '../admin/repository.js'
import { registerPool } from './database.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The operators' SQL (src/admin/repository.ts), for the admin API and the console. */
    adminRepository: AdminRepository
  }
}

/**
 * What the admin API (/admin) and the console (/console) read and decide through: one repository.
 * Lists and run pages read from DATABASE_READ_URL when set (a replica, which may lag); every decision
 * (replay, erasure, resolve) goes to the primary. The read pool belongs here.
 */
export default fp(async function adminData (fastify) {
  const { config } = fastify
  const reads = config.databaseReadUrl === undefined
    ? fastify.pg.pool
    : await registerPool(fastify, { name: 'read', max: config.dbPoolMax, applicationName: 'hookgate-admin-read', connectionString: config.databaseReadUrl, readOnly: true })
  if (reads !== fastify.pg.pool) fastify.metrics.watchPool('read', reads)
  fastify.decorate('adminRepository', adminRepository(fastify.pg.pool, reads))
}, { name: 'admin-data', dependencies: ['database', 'metrics'] })
