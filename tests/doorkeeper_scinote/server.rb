# frozen_string_literal: true

# SciNote-like OAuth2 server for oauth-poller's integration tests: a one-file Rails 6.1 app
# with Doorkeeper 5.5 (Debian bookworm's ruby-rails, ruby-doorkeeper, puma, ruby-sqlite3),
# configured as SciNote configures Doorkeeper. See README.md next to this file.
#
#   ruby tests/doorkeeper_scinote/server.rb --state-dir DIR [--access-ttl SECS] [--dash-codes]
#
# Once listening on 127.0.0.1 (a free port), it prints one JSON line to stdout.

require "json"
require "logger"
require "optparse"
require "securerandom"
require "socket"

options = { access_ttl: 7200, dash_codes: false }
OptionParser.new do |o|
  o.on("--state-dir DIR") { |v| options[:state_dir] = v }
  o.on("--access-ttl SECS", Integer) { |v| options[:access_ttl] = v }
  o.on("--dash-codes") { options[:dash_codes] = true }
end.parse!
abort "--state-dir is required" unless options[:state_dir]
STATE_DIR = File.expand_path(options[:state_dir])
DATABASE = File.join(STATE_DIR, "doorkeeper.sqlite3")
ACCESS_TTL = options[:access_ttl]

require "rails"
require "active_support/all"
require "active_record/railtie"
require "action_controller/railtie"
require "action_view/railtie"
require "doorkeeper"

class ScinoteFixture < Rails::Application
  config.root = __dir__
  config.eager_load = false
  config.hosts.clear
  config.secret_key_base = SecureRandom.hex(64)
  config.logger = Logger.new($stderr, level: Logger::WARN)
  config.active_support.deprecation = :silence
  config.session_store :cookie_store, key: "_scinote_session"
  config.action_dispatch.show_exceptions = false
  config.consider_all_requests_local = true
end

ENV["DATABASE_URL"] = "sqlite3:#{DATABASE}"

# SciNote's config/initializers/doorkeeper.rb, minus Devise and doorkeeper-jwt (not packaged
# by Debian): opaque tokens, the rest as SciNote sets it.
Doorkeeper.configure do
  orm :active_record
  resource_owner_authenticator do
    User.find_by(id: session[:user_id]) || begin
      session[:return_to] = request.fullpath
      redirect_to("/users/sign_in")
      nil
    end
  end
  access_token_expires_in ACCESS_TTL.seconds
  use_refresh_token
  default_scopes :public
  grant_flows %w[authorization_code]
end

ScinoteFixture.initialize!
# Quiet: Active Record's debug log would carry token values.
ActiveRecord::Base.logger = nil

# SciNote's schema: Doorkeeper's generated tables with `previous_refresh_token` (lazy
# rotation) and without the PKCE columns (code_challenge, code_challenge_method).
ActiveRecord::Migration.verbose = false
ActiveRecord::Schema.define do
  create_table :users, if_not_exists: true do |t|
    t.string :email, null: false
    t.string :password, null: false
  end
  create_table :oauth_applications, if_not_exists: true do |t|
    t.string :name, null: false
    t.string :uid, null: false, index: { unique: true }
    t.string :secret, null: false
    t.text :redirect_uri, null: false
    t.string :scopes, null: false, default: ""
    t.boolean :confidential, null: false, default: true
    t.timestamps null: false
  end
  create_table :oauth_access_grants, if_not_exists: true do |t|
    t.references :resource_owner, null: false
    t.references :application, null: false
    t.string :token, null: false, index: { unique: true }
    t.integer :expires_in, null: false
    t.text :redirect_uri, null: false
    t.datetime :created_at, null: false
    t.datetime :revoked_at
    t.string :scopes, null: false, default: ""
  end
  create_table :oauth_access_tokens, if_not_exists: true do |t|
    t.references :resource_owner, index: true
    t.references :application, null: false
    t.string :token, null: false, index: { unique: true }
    t.string :refresh_token, index: { unique: true }
    t.integer :expires_in
    t.datetime :revoked_at
    t.datetime :created_at, null: false
    t.string :scopes
    t.string :previous_refresh_token, null: false, default: ""
  end
  create_table :token_requests, if_not_exists: true do |t|
    t.string :grant_type
    t.string :refresh_token
    t.integer :status
    t.datetime :created_at, null: false
  end
end

class User < ActiveRecord::Base; end

# Every token-endpoint request, with the refresh token it presented: lets a test prove that
# no refresh token was presented twice (Doorkeeper does not refuse a reuse by itself here).
class TokenRequest < ActiveRecord::Base; end

if options[:dash_codes]
  # Doorkeeper's codes are URL-safe base64, so 1 in 64 starts with "-"; this makes it all of
  # them, for the test of codes given on the command line.
  Doorkeeper::AccessGrant.prepend(Module.new do
    private

    def generate_token
      @raw_token = "-#{Doorkeeper::OAuth::Helpers::UniqueToken.generate}"
      secret_strategy.store_secret(self, :token, @raw_token)
    end
  end)
end

class SessionsController < ActionController::Base
  def new
    render html: <<~HTML.html_safe
      <!DOCTYPE html><html><body><h1>Sign in</h1>
      <form action="/users/sign_in" method="post">
      <input type="hidden" name="authenticity_token" value="#{form_authenticity_token}">
      <input type="text" name="email" value="">
      <input type="password" name="password" value="">
      <input type="submit" value="Log in">
      </form></body></html>
    HTML
  end

  def create
    user = User.find_by(email: params[:email].to_s)
    if user && ActiveSupport::SecurityUtils.secure_compare(user.password, params[:password].to_s)
      session[:user_id] = user.id
      redirect_to(session.delete(:return_to) || "/")
    else
      head :unauthorized
    end
  end
end

module Api
  module V1
    # SciNote's API: `Authorization: Bearer <token>`, Doorkeeper's 401 otherwise.
    class ProjectsController < ActionController::API
      before_action :doorkeeper_authorize!

      def index
        render json: { data: [{ id: "1", type: "projects", attributes: { name: "Demo project" } }] }
      end
    end
  end
end

# Records what reached the token endpoint and what it answered.
class TokenLog
  def initialize(app)
    @app = app
  end

  def call(env)
    return @app.call(env) unless env["PATH_INFO"] == "/oauth/token"

    request = Rack::Request.new(env)
    params = request.POST
    status, headers, body = @app.call(env)
    TokenRequest.create!(grant_type: params["grant_type"], refresh_token: params["refresh_token"],
                         status: status)
    [status, headers, body]
  end
end

ScinoteFixture.routes.draw do
  use_doorkeeper
  get "/users/sign_in" => "sessions#new"
  post "/users/sign_in" => "sessions#create"
  get "/api/v1/teams/:team_id/projects" => "api/v1/projects#index"
end

password = SecureRandom.urlsafe_base64(18)
User.delete_all
user = User.create!(email: "owner@example.test", password: password)
client_secret = SecureRandom.urlsafe_base64(32)
Doorkeeper::Application.delete_all
app = Doorkeeper::Application.create!(name: "oauth-poller", redirect_uri: "urn:ietf:wg:oauth:2.0:oob",
                                      secret: client_secret, scopes: "public", confidential: true)

require "puma"
require "puma/server"
rack_app = Rack::Builder.new do
  use TokenLog
  run ScinoteFixture
end
server = Puma::Server.new(rack_app, Puma::Events.strings, min_threads: 1, max_threads: 4)
listener = server.add_tcp_listener("127.0.0.1", 0)
port = listener.addr[1]
thread = server.run
root = "http://127.0.0.1:#{port}"
$stdout.puts JSON.generate(
  base_url: "#{root}/",
  authorize_url: "#{root}/oauth/authorize",
  token_url: "#{root}/oauth/token",
  sign_in_url: "#{root}/users/sign_in",
  client_id: app.uid,
  client_secret: client_secret,
  email: user.email,
  password: password,
  database: DATABASE
)
$stdout.flush
%w[TERM INT].each { |sig| Signal.trap(sig) { server.stop } }
thread.join
