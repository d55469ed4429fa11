// The private redis-server of the e2e tests is the process toolkit's (also used by the demo and the
// soak): its own port and directory, stop/kill and start again on the same port for fault tests.
export { freePort, RedisServer as TestRedisServer, type RedisServerOptions } from '../../scripts/lib/processes';
