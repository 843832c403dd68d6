import { provideHttpClient, withFetch, withInterceptors } from '@angular/common/http';
import { ApplicationConfig, inject, provideBrowserGlobalErrorListeners } from '@angular/core';
import { provideRouter, withComponentInputBinding } from '@angular/router';
import { DevTokenSource, provideTierguard, tierguardInterceptor } from '@tierguard/angular';

import { routes } from './app.routes';

export const appConfig: ApplicationConfig = {
  providers: [
    provideBrowserGlobalErrorListeners(),
    provideRouter(routes, withComponentInputBinding()),
    provideHttpClient(withFetch(), withInterceptors([tierguardInterceptor])),
    provideTierguard({
      // The demo is served by `tierguard serve --dev` itself: same origin.
      serviceUrl: '',
      tokens: () => inject(DevTokenSource),
      sendIdToken: true,
      redirectTo: '/upgrade',
      loginPath: '/login',
    }),
  ],
};
