import { Module } from '@nestjs/common';
import { PlaygroundController } from './playground.controller';

/** The browser page at /playground (its CSP: security/http-hardening.ts). */
@Module({ controllers: [PlaygroundController] })
export class PlaygroundModule {}
