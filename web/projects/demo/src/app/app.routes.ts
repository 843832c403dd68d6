import { Routes } from '@angular/router';
import { tierguardGuard } from '@tierguard/angular';

import { AccountPage } from './pages/account';
import { HomePage } from './pages/home';
import { LoginPage } from './pages/login';
import { NotFoundPage } from './pages/not-found';
import { PlaylistsPage } from './pages/playlists';
import { TreasurePage } from './pages/treasure';
import { UpgradePage } from './pages/upgrade';
import { VideoPage } from './pages/video';
import { VideosPage } from './pages/videos';

// Every page the policy lists is guarded, except the two pages the guard
// sends people to: a guard on its own deny page could only loop.
export const routes: Routes = [
  { path: '', component: HomePage, canActivate: [tierguardGuard], title: 'tierguard demo' },
  { path: 'login', component: LoginPage, title: 'Sign in' },
  { path: 'upgrade', component: UpgradePage, title: 'Upgrade' },
  { path: 'videos', component: VideosPage, canActivate: [tierguardGuard], title: 'Videos' },
  { path: 'videos/:id', component: VideoPage, canActivate: [tierguardGuard], title: 'Video' },
  { path: 'account', component: AccountPage, canActivate: [tierguardGuard], title: 'Account' },
  { path: 'playlists', component: PlaylistsPage, canActivate: [tierguardGuard], title: 'Playlists' },
  {
    path: 'protected-content',
    component: TreasurePage,
    canActivate: [tierguardGuard],
    title: 'The treasure map',
  },
  {
    // canMatch: a user below pro never downloads the admin page's code.
    path: 'admin',
    canMatch: [tierguardGuard],
    loadComponent: () => import('./pages/admin').then((m) => m.AdminPage),
    title: 'Admin',
  },
  { path: '**', component: NotFoundPage, title: 'Not found' },
];
