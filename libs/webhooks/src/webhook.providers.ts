import type { ValueProvider } from '@nestjs/common';
import { dnsHostResolver, dnsLookup, type HostResolver, type LookupFunction } from './ssrf-guard';

/**
 * Name resolution is injected, never imported, so tests can stand in a resolver that answers a
 * public address at registration and 127.0.0.1 at delivery (DNS rebinding) without real DNS.
 */
export const WEBHOOK_HOST_RESOLVER = Symbol('WEBHOOK_HOST_RESOLVER');
export const WEBHOOK_DNS_LOOKUP = Symbol('WEBHOOK_DNS_LOOKUP');

/** The API's resolver for judging a webhook URL at submission (HostResolver). */
export const webhookHostResolverProvider: ValueProvider<HostResolver> = { provide: WEBHOOK_HOST_RESOLVER, useValue: dnsHostResolver };

/** The lookup the delivery sockets connect with; the guarded agents check every address it returns. */
export const webhookDnsLookupProvider: ValueProvider<LookupFunction> = { provide: WEBHOOK_DNS_LOOKUP, useValue: dnsLookup };
