import { Controller, Get, Header, Param, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ErrorCode } from '@app/common';
import { Public } from '../auth/public-route';
import { ApiError } from '../common/api-error';
import { loadPlaygroundAssets, type PlaygroundAsset } from './playground.assets';

/** Path of the page; its scripts and styles are under PLAYGROUND_ASSETS. */
export const PLAYGROUND_PATH = '/playground';
export const PLAYGROUND_ASSETS = '/playground/assets';

/**
 * GET /playground: a page to try the API in a browser (apps/api/playground). Static and public: the
 * page itself holds no data; every API call it makes carries the key the user types in. `/` points
 * here and to the docs.
 */
@ApiExcludeController()
@Public()
@Controller()
export class PlaygroundController {
  private readonly assets = loadPlaygroundAssets();

  @Get()
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
  page(@Req() req: Request, @Res() res: Response): void {
    this.send(this.asset('index.html'), req, res);
  }

  @Get('playground/assets/:file')
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
