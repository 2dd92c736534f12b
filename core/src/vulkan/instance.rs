//! The Vulkan loader, instances, device enumeration and selection, and the
//! validation-layer message recorder.

use super::error::VulkanError;
use ash::vk;
use std::ffi::{c_void, CStr};
use std::sync::{Arc, Mutex};

/// Kind of physical device, as Vulkan reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    /// A discrete GPU (preferred by [`DeviceSelector::Default`]).
    Discrete,
    /// A GPU integrated with the host CPU.
    Integrated,
    /// A virtualized GPU.
    Virtual,
    /// A CPU implementation (for example lavapipe).
    Cpu,
    /// Anything else.
    Other,
}

impl DeviceType {
    fn from_vk(t: vk::PhysicalDeviceType) -> Self {
        match t {
            vk::PhysicalDeviceType::DISCRETE_GPU => DeviceType::Discrete,
            vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceType::Integrated,
            vk::PhysicalDeviceType::VIRTUAL_GPU => DeviceType::Virtual,
            vk::PhysicalDeviceType::CPU => DeviceType::Cpu,
            _ => DeviceType::Other,
        }
    }

    /// Preference order for default selection (lower is better).
    fn rank(self) -> u8 {
        match self {
            DeviceType::Discrete => 0,
            DeviceType::Integrated => 1,
            DeviceType::Virtual => 2,
            DeviceType::Other => 3,
            DeviceType::Cpu => 4,
        }
    }
}

/// One physical device as listed by [`Instance::devices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Position in the loader's enumeration (what [`DeviceSelector::Index`] uses).
    pub index: usize,
    /// Driver-reported device name.
    pub name: String,
    /// Kind of device.
    pub device_type: DeviceType,
    /// PCI vendor id (or Khronos vendor id).
    pub vendor_id: u32,
    /// Vendor-specific device id.
    pub device_id: u32,
    /// Highest Vulkan version the device supports.
    pub api_version: u32,
}

/// Which device a [`super::Dispatcher`] should drive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeviceSelector {
    /// The first discrete GPU, else integrated, virtual, other, CPU.
    #[default]
    Default,
    /// The device at this enumeration index.
    Index(usize),
    /// The first device whose name contains this substring (case-insensitive).
    Name(String),
}

/// Severity of a recorded validation-layer message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageSeverity {
    /// A warning: likely misuse or a portability problem.
    Warning,
    /// An error: invalid use of the API.
    Error,
}

/// A message from the Khronos validation layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationMessage {
    /// Warning or error.
    pub severity: MessageSeverity,
    /// The layer's message id name (VUID) and text.
    pub text: String,
}

pub(crate) type MessageLog = Arc<Mutex<Vec<ValidationMessage>>>;

unsafe extern "system" fn record_message(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    user: *mut c_void,
) -> vk::Bool32 {
    if data.is_null() || user.is_null() {
        return vk::FALSE;
    }
    // SAFETY: `user` is the pointer to the `Mutex` inside the `MessageLog`
    // that the owning `VkHandles` keeps alive until after the messenger is
    // destroyed; `data` is valid for the duration of the callback per the spec.
    let (log, data) = unsafe { (&*(user as *const Mutex<Vec<ValidationMessage>>), &*data) };
    let text = |p: *const std::ffi::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: the layer passes NUL-terminated strings valid for the callback.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let severity = if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR) {
        MessageSeverity::Error
    } else {
        MessageSeverity::Warning
    };
    let msg = ValidationMessage {
        severity,
        text: format!("{}: {}", text(data.p_message_id_name), text(data.p_message)),
    };
    if let Ok(mut v) = log.lock() {
        v.push(msg);
    }
    vk::FALSE
}

/// A loaded loader plus one VkInstance (and its messenger when validating).
pub(crate) struct VkHandles {
    pub entry: ash::Entry,
    pub instance: ash::Instance,
    pub api_version: u32,
    debug: Option<(ash::ext::debug_utils::Instance, vk::DebugUtilsMessengerEXT)>,
    pub messages: MessageLog,
    pub validation: bool,
    /// Set when a device could not be destroyed (a wedged queue): destroying
    /// the instance would then be invalid, so it is leaked.
    pub leak: bool,
}

const VALIDATION_LAYER: &CStr = c"VK_LAYER_KHRONOS_validation";

pub(crate) fn load_entry(path: Option<&std::path::Path>) -> Result<ash::Entry, VulkanError> {
    // SAFETY: loading libvulkan runs its initialisers; the Vulkan loader is
    // designed to be opened this way, and ash keeps the library loaded for
    // as long as the Entry lives.
    match path {
        None => unsafe { ash::Entry::load() },
        Some(p) => unsafe { ash::Entry::load_from(p) },
    }
    .map_err(|_| VulkanError::LoaderUnavailable)
}

impl VkHandles {
    pub(crate) fn create(entry: ash::Entry, validation: bool) -> Result<Self, VulkanError> {
        Self::create_with_log(entry, validation, Arc::new(Mutex::new(Vec::new())))
    }

    /// Creates an instance whose validation messages go to `messages`.
    pub(crate) fn create_with_log(
        entry: ash::Entry,
        validation: bool,
        messages: MessageLog,
    ) -> Result<Self, VulkanError> {
        // SAFETY: plain query on a loaded entry.
        let loader_version = unsafe { entry.try_enumerate_instance_version() }
            .map_err(VulkanError::Vulkan)?
            .unwrap_or(vk::API_VERSION_1_0);
        if loader_version < vk::API_VERSION_1_1 {
            return Err(VulkanError::ApiVersionTooOld {
                version: loader_version,
            });
        }
        let api_version = loader_version.min(vk::API_VERSION_1_3);
        let mut layers = Vec::new();
        let mut extensions = Vec::new();
        if validation {
            // SAFETY: plain queries on a loaded entry.
            let layer_ok = unsafe { entry.enumerate_instance_layer_properties() }
                .map_err(VulkanError::Vulkan)?
                .iter()
                .any(|l| l.layer_name_as_c_str() == Ok(VALIDATION_LAYER));
            // SAFETY: as above.
            let ext_ok = unsafe { entry.enumerate_instance_extension_properties(None) }
                .map_err(VulkanError::Vulkan)?
                .iter()
                .any(|e| e.extension_name_as_c_str() == Ok(ash::ext::debug_utils::NAME));
            if !layer_ok || !ext_ok {
                return Err(VulkanError::ValidationUnavailable);
            }
            layers.push(VALIDATION_LAYER.as_ptr());
            extensions.push(ash::ext::debug_utils::NAME.as_ptr());
        }
        let app = vk::ApplicationInfo::default()
            .application_name(c"tessera")
            .engine_name(c"tessera")
            .api_version(api_version);
        let user = Arc::as_ptr(&messages) as *mut c_void;
        let mut messenger_info = vk::DebugUtilsMessengerCreateInfoEXT::default()
            .message_severity(
                vk::DebugUtilsMessageSeverityFlagsEXT::WARNING
                    | vk::DebugUtilsMessageSeverityFlagsEXT::ERROR,
            )
            .message_type(
                vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                    | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                    | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
            )
            .pfn_user_callback(Some(record_message))
            .user_data(user);
        let mut info = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_layer_names(&layers)
            .enabled_extension_names(&extensions);
        if validation {
            info = info.push_next(&mut messenger_info);
        }
        // SAFETY: every pointer in `info` refers to locals that outlive the call.
        let instance = unsafe { entry.create_instance(&info, None) }.map_err(|e| match e {
            vk::Result::ERROR_INCOMPATIBLE_DRIVER => VulkanError::NoDevice,
            other => VulkanError::Vulkan(other),
        })?;
        let debug = if validation {
            let du = ash::ext::debug_utils::Instance::new(&entry, &instance);
            // SAFETY: the callback's user pointer stays valid while `messages`
            // lives, and `messages` is dropped after the messenger (see Drop).
            match unsafe { du.create_debug_utils_messenger(&messenger_info, None) } {
                Ok(m) => Some((du, m)),
                Err(e) => {
                    // SAFETY: nothing else was created from this instance.
                    unsafe { instance.destroy_instance(None) };
                    return Err(VulkanError::Vulkan(e));
                }
            }
        } else {
            None
        };
        Ok(VkHandles {
            entry,
            instance,
            api_version,
            debug,
            messages,
            validation,
            leak: false,
        })
    }

    pub(crate) fn physical_devices(
        &self,
    ) -> Result<Vec<(vk::PhysicalDevice, DeviceInfo)>, VulkanError> {
        // SAFETY: the instance is alive.
        let pds =
            unsafe { self.instance.enumerate_physical_devices() }.map_err(VulkanError::Vulkan)?;
        Ok(pds
            .into_iter()
            .enumerate()
            .map(|(index, pd)| {
                // SAFETY: `pd` was just enumerated from this instance.
                let p = unsafe { self.instance.get_physical_device_properties(pd) };
                let name = p
                    .device_name_as_c_str()
                    .map(|c| c.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (
                    pd,
                    DeviceInfo {
                        index,
                        name,
                        device_type: DeviceType::from_vk(p.device_type),
                        vendor_id: p.vendor_id,
                        device_id: p.device_id,
                        api_version: p.api_version,
                    },
                )
            })
            .collect())
    }

    pub(crate) fn select(
        &self,
        selector: &DeviceSelector,
    ) -> Result<(vk::PhysicalDevice, DeviceInfo), VulkanError> {
        let devices = self.physical_devices()?;
        if devices.is_empty() {
            return Err(VulkanError::NoDevice);
        }
        let found = match selector {
            DeviceSelector::Default => devices
                .into_iter()
                .min_by_key(|(_, d)| (d.device_type.rank(), d.index)),
            DeviceSelector::Index(i) => devices.into_iter().find(|(_, d)| d.index == *i),
            DeviceSelector::Name(n) => {
                let n = n.to_lowercase();
                devices
                    .into_iter()
                    .find(|(_, d)| d.name.to_lowercase().contains(&n))
            }
        };
        found.ok_or(VulkanError::DeviceNotFound)
    }

    pub(crate) fn take_messages(&self) -> Vec<ValidationMessage> {
        match self.messages.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for VkHandles {
    fn drop(&mut self) {
        if self.leak {
            // A device of this instance is still executing and cannot be
            // destroyed; the messenger's user data must then stay alive too.
            // Keep the loader library mapped as well: the driver behind the
            // leaked device still runs code from it.
            std::mem::forget(self.messages.clone());
            std::mem::forget(self.entry.clone());
            return;
        }
        // SAFETY: every device created from this instance was destroyed
        // before (the dispatcher sets `leak` otherwise); the messenger is
        // destroyed before the instance, and `messages` outlives both.
        unsafe {
            if let Some((du, m)) = self.debug.take() {
                du.destroy_debug_utils_messenger(m, None);
            }
            self.instance.destroy_instance(None);
        }
    }
}

/// The Vulkan loader with one instance, for listing devices. Each
/// [`super::Dispatcher`] opens its own Vulkan instance from the same loader
/// (so validation can be switched on per dispatcher).
pub struct Instance {
    pub(crate) handles: VkHandles,
}

impl Instance {
    /// Opens the Vulkan loader at run time and creates an instance.
    /// A machine without libvulkan gets [`VulkanError::LoaderUnavailable`].
    pub fn load() -> Result<Instance, VulkanError> {
        Self::from_entry(load_entry(None)?)
    }

    /// Like [`Instance::load`], but opens the loader library at `path`
    /// (for hosts that ship their own libvulkan).
    pub fn load_from(path: &std::path::Path) -> Result<Instance, VulkanError> {
        Self::from_entry(load_entry(Some(path))?)
    }

    fn from_entry(entry: ash::Entry) -> Result<Instance, VulkanError> {
        Ok(Instance {
            handles: VkHandles::create(entry, false)?,
        })
    }

    /// Every physical device the loader reports, in enumeration order.
    /// Empty when there is none (or enumeration failed).
    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.handles
            .physical_devices()
            .map(|v| v.into_iter().map(|(_, d)| d).collect())
            .unwrap_or_default()
    }

    /// The device `selector` picks, or [`VulkanError::NoDevice`] /
    /// [`VulkanError::DeviceNotFound`].
    pub fn select(&self, selector: &DeviceSelector) -> Result<DeviceInfo, VulkanError> {
        self.handles.select(selector).map(|(_, d)| d)
    }
}
