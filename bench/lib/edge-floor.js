'use strict';
/*
 * A floor for bench/edge.js: the least a server must do for a route, with no framework, so the
 * API's figure can be read against it. Run as its own process (its CPU is measured like the API's):
 *
 *   node bench/lib/edge-floor.js <kind> <port> <redis-url> <answer-file>
 *
 * kinds:
 *   bare   node:http answers the bytes of <answer-file> as JSON (no Redis): the machine's floor.
 *   get    plus the Redis round trips the API's job GET makes, in the same order: is any API key
 *          defined (EXISTS), the rate-limit counter (one script: INCR, PEXPIRE on the first hit,
 *          PTTL), the job record (GET), parsed and stringified again.
 *   submit plus what a submission needs at least: the rate-limit script, the body parsed, the
 *          job added with BullMQ's Queue.add (its Lua script), answered 202 with the job's JSON.
 *   nest   the `get` floor's work in a minimal NestJS app (Express adapter, one controller, no
 *          middleware, guard, pipe or logger of ours): what the framework itself costs.
 *   nest-fastify  the same app on Nest's Fastify adapter (@nestjs/platform-fastify, a dev
 *          dependency for this measurement): what switching the adapter would give at most.
 * Prints "listening" once it serves.
 */
const http = require('node:http');
const { readFileSync } = require('node:fs');
const { randomUUID } = require('node:crypto');
const Redis = require('ioredis');

const [kind, port, redisUrl, answerFile] = process.argv.slice(2);
const KINDS = ['bare', 'get', 'submit', 'nest', 'nest-fastify'];
if (!KINDS.includes(kind) || !/^\d+$/.test(port ?? '') || !redisUrl || !answerFile) {
  process.stderr.write(`usage: node bench/lib/edge-floor.js <${KINDS.join('|')}> <port> <redis-url> <answer-file>\n`);
  process.exit(2);
}
const answer = readFileSync(answerFile);

// Same shape as the rate limiter's script: one counter per window, its TTL set by the first hit.
const THROTTLE = `local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return {n, redis.call('PTTL', KEYS[1])}`;

const RECORD_KEY = 'edge-floor:record';

/** The `get` floor's route as a NestJS controller (decorators applied by hand: this file is plain JS). */
async function nestFloor(redis, adapter) {
  require('reflect-metadata');
  const { Controller, Get, Module, Param } = require('@nestjs/common');
  const { NestFactory } = require('@nestjs/core');
  class JobsController {
    async get(_id) {
      await redis.exists('edge-floor:keys');
      await redis.eval(THROTTLE, 1, 'edge-floor:rate', 60_000);
      return JSON.parse(await redis.get(RECORD_KEY));
    }
  }
  Param('id')(JobsController.prototype, 'get', 0);
  Reflect.defineMetadata('design:paramtypes', [String], JobsController.prototype, 'get');
  Get('api/v1/images/jobs/:id')(JobsController.prototype, 'get', Object.getOwnPropertyDescriptor(JobsController.prototype, 'get'));
  Controller()(JobsController);
  class AppModule {}
  Module({ controllers: [JobsController] })(AppModule);
  let app;
  if (adapter === 'fastify') {
    const { FastifyAdapter } = require('@nestjs/platform-fastify');
    app = await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false });
  } else {
    app = await NestFactory.create(AppModule, { logger: false });
  }
  await app.listen(Number(port), '127.0.0.1');
  process.stdout.write('listening\n');
  const stop = async () => {
    await app.close();
    await redis.quit().catch(() => undefined);
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

async function main() {
  const redis = kind === 'bare' ? undefined : new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  const recordKey = RECORD_KEY;
  if (redis) await redis.set(recordKey, answer);
  if (kind === 'nest') return nestFloor(redis, 'express');
  if (kind === 'nest-fastify') return nestFloor(redis, 'fastify');
  let queue;
  if (kind === 'submit') {
    const { Queue } = require('bullmq');
    queue = new Queue('edge-floor', { connection: { url: redisUrl, maxRetriesPerRequest: 1 } });
    await queue.waitUntilReady();
  }
  const send = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
    res.end(body);
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      try {
        if (kind === 'bare') return send(res, 200, answer);
        await redis.exists('edge-floor:keys');
        await redis.eval(THROTTLE, 1, 'edge-floor:rate', 60_000);
        if (kind === 'get') {
          const record = JSON.parse(await redis.get(recordKey));
          return send(res, 200, Buffer.from(JSON.stringify(record)));
        }
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        const job = await queue.add('generate', { params: body, submitted_at: Date.now() }, { jobId: randomUUID(), removeOnComplete: true });
        return send(res, 202, Buffer.from(JSON.stringify({ id: job.id, status: 'queued', params: body })));
      } catch (e) {
        send(res, 500, Buffer.from(JSON.stringify({ error: String(e && e.message) })));
      }
    });
  });
  server.listen(Number(port), '127.0.0.1', () => process.stdout.write('listening\n'));
  const stop = async () => {
    server.close();
    await queue?.close().catch(() => undefined);
    await redis?.quit().catch(() => undefined);
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((e) => {
  process.stderr.write(`edge-floor: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
