//! The `export!` macro.

/// Exports a [`Module`](crate::Module) implementation as the component's `module` interface.
///
/// Use it once per crate, at module level: `wedge_sdk::export!(MyModule);`. It keeps the single
/// instance in a thread-local (wasm components are single-threaded), builds it in `init` (a
/// second `init` replaces it) and makes every other export fail with `module not initialised`
/// until an `init` has succeeded.
///
/// `wedge_sdk::export!(MyModule, service);` also exports the `service` interface of a
/// long-running module: `MyModule` implements [`Service`](crate::Service) as well, and `run`
/// is called on the instance `init` built.
#[macro_export]
macro_rules! export {
    ($t:ty) => {
        $crate::export!(@module $t, {});
    };
    ($t:ty, service) => {
        $crate::export!(@module $t, {
            struct __WedgeService;

            impl $crate::bindings::service::exports::wedge::edge::service::Guest
                for __WedgeService
            {
                fn run() -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::run::<$t>(&__WEDGE_INSTANCE)
                }
            }

            $crate::bindings::service::__wedge_export_service_bindings!(
                __WedgeService with_types_in $crate::bindings::service
            );
        });
    };
    (@module $t:ty, { $($service:tt)* }) => {
        // An anonymous const keeps the helper names out of the module's namespace.
        const _: () = {
            ::std::thread_local! {
                static __WEDGE_INSTANCE: ::core::cell::RefCell<::core::option::Option<$t>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct __WedgeGuest;

            impl $crate::bindings::exports::wedge::edge::module::Guest for __WedgeGuest {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$t>(&__WEDGE_INSTANCE, config)
                }

                fn on_config(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::on_config::<$t>(&__WEDGE_INSTANCE, config)
                }

                fn on_message(
                    input: ::std::string::String,
                    msg: $crate::Message,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::on_message::<$t>(&__WEDGE_INSTANCE, input, msg)
                }

                fn on_tick() -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::on_tick::<$t>(&__WEDGE_INSTANCE)
                }

                fn on_method(
                    name: ::std::string::String,
                    payload: ::std::string::String,
                ) -> ::core::result::Result<$crate::MethodResponse, ::std::string::String> {
                    $crate::__private::on_method::<$t>(&__WEDGE_INSTANCE, name, payload)
                }
            }

            // `with_types_in $crate::bindings` instead of the default `wedge_sdk::bindings` so the
            // expansion works even if the module renames the dependency.
    $crate::bindings::__wedge_export_bindings!(__WedgeGuest with_types_in $crate::bindings);

            $($service)*
        };
    };
}
