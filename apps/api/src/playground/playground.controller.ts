import { Controller, Get, Header, Param, Req, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ErrorCode } from '@app/common';
import { Public } from '../auth/public-route';
import { ApiError } from '../common/api-error';
import { ApiErrors } from '../docs/api-errors';
import { loadPlaygroundAssets, type PlaygroundAsset } from './playground.assets';

/** Path of the page; its scripts and styles are under PLAYGROUND_ASSETS. */
export const PLAYGROUND_PATH = '/playground';
export const PLAYGROUND_ASSETS = '/playground/assets';

/**
 * GET /playground: a page to try the API in a browser (apps/api/playground). Static and public: the
 * page itself holds no data; every API call it makes carries the key the user types in. `/` points
 * here and to the docs.
 */
@ApiTags('playground')
@Public()
@Controller()
export class PlaygroundController {
  private readonly assets = loadPlaygroundAssets();

  @Get()
  @ApiOperation({ summary: 'Where things are: a browser is redirected to the playground, a program gets the links', security: [] })
  @ApiOkResponse({
    description: 'The links (for clients that do not prefer text/html; a browser gets a 302 to /playground)',
    content: { 'application/json': { schema: { type: 'object', additionalProperties: { type: 'string' }, example: { name: 'Fictures AI Server', playground: '/playground', docs: '/docs', redoc: '/redoc', openapi: '/docs-json', health: '/health' } } } },
  })
  @Header('Cache-Control', 'no-cache')
  @Header('Vary', 'Accept')
  root(@Req() req: Request, @Res() res: Response): void {
    // A browser (which prefers text/html) is sent to the page; curl and programs get where things are.
    if (req.accepts(['json', 'html']) === 'html') {
      res.redirect(302, PLAYGROUND_PATH);
      return;
    }
    res.json({ name: 'Fictures AI Server', playground: PLAYGROUND_PATH, docs: '/docs', redoc: '/redoc', openapi: '/docs-json', health: '/health' });
  }

  @Get('playground')
  @ApiOperation({ summary: 'The playground: try the API in a browser (bundled, no CDN)', security: [] })
  @ApiOkResponse({ description: 'The page', content: { 'text/html': { schema: { type: 'string' } } } })
  page(@Req() req: Request, @Res() res: Response): void {
    this.send(this.asset('index.html'), req, res);
  }

  @Get('playground/assets/:file')
  @ApiOperation({ summary: "The playground's scripts and styles", security: [] })
  @ApiParam({ name: 'file', schema: { type: 'string' } })
  @ApiErrors(ErrorCode.NotFound)
  @ApiOkResponse({ description: 'The asset (ETag; 304 on If-None-Match)', content: { 'text/javascript': { schema: { type: 'string' } }, 'text/css': { schema: { type: 'string' } } } })
  file(@Param('file') file: string, @Req() req: Request, @Res() res: Response): void {
    this.send(file === 'index.html' ? undefined : this.asset(file), req, res);
  }

  private asset(name: string): PlaygroundAsset | undefined {
    return this.assets.get(name);
  }

  private send(asset: PlaygroundAsset | undefined, req: Request, res: Response): void {
    if (!asset) throw new ApiError(ErrorCode.NotFound, 'No such page');
    // Not versioned in their URLs: revalidated on every load, by ETag (a 304 costs no bytes).
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('ETag', asset.etag);
    if (req.headers['if-none-match'] === asset.etag) {
      res.status(304).end();
      return;
    }
    res.type(asset.contentType).send(asset.body);
  }
}
